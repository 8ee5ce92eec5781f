"""The public search API: any space, any objective, any agent.

    result = arrl.search({"op": {"choices": ["conv3", "skip"]}, "lr": {"choices": [0.01, 0.02]}},
                         lambda p: my_loss(p["op"], p["lr"]), agent="evolution", max_trials=100, seed=0)
    result.best.params, result.best.score, [t.score for t in result.trials]

Same seed, same space, same objective: same trials.

With `run_dir`, the search holds RUN_DIR/lock while it runs and RUN_DIR/search.json names its objective
(module, qualified name and a hash of its code) and space; a rerun with another objective or space is
refused. With `trial_timeout_s`, each call runs in a forked child process that is killed when the time is
up (recorded as a timeout): the objective must then be fork-safe (POSIX; no threads or accelerator runtime
already started in the caller, e.g. no JAX computation before the search) and its side effects stay in the
child; only the returned float comes back. Without it the objective runs in-process and cannot be stopped.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import tempfile
import traceback
import types
from typing import Any, Callable

from arrl import tree as tree_lib
from arrl.agents import make_agent, run_dir_options
from arrl.io import write_json_atomic
from arrl.lock import RunDirLock
from arrl.loop import EvalResult, LoopConfig, SearchLoop
from arrl.oracle import Oracle
from arrl.space import Space
from arrl.trial import EvalContext, Status


@dataclasses.dataclass(frozen=True)
class Trial:
  trial_id: str
  params: dict[str, Any]
  score: float | None          # None when the objective raised or returned a non-finite value
  status: str                  # baseline | keep | discard | confirm | crash | diverged | timeout
  cached: bool                 # True when the program had been measured before (not re-evaluated)


@dataclasses.dataclass(frozen=True)
class SearchResult:
  best: Trial
  trials: list[Trial]
  stop_reason: str
  run_dir: str


def _call(objective: Callable[[dict], float], params: dict) -> tuple[Status, float | None, str]:
  """(status, score, traceback text): the objective is user code, so any exception is a recorded crash."""
  try:
    return Status.OK, float(objective(params)), ""
  except Exception:
    return Status.CRASH, None, traceback.format_exc(limit=3)[-2000:]


def _child(objective: Callable[[dict], float], params: dict, conn: Any) -> None:
  conn.send(_call(objective, params))
  conn.close()


def _call_in_child(objective: Callable[[dict], float], params: dict, timeout_s: float) -> tuple[Status, float | None, str]:
  ctx = multiprocessing.get_context("fork")   # fork: lambdas and closures need no pickling
  recv, send = ctx.Pipe(duplex=False)
  proc = ctx.Process(target=_child, args=(objective, params, send))
  proc.start()
  send.close()
  try:
    if not recv.poll(timeout_s):
      return Status.TIMEOUT, None, f"the objective did not return within trial_timeout_s={timeout_s:g} s (killed)"
    return recv.recv()
  except EOFError:
    proc.join()
    return Status.CRASH, None, f"the objective's process died without a result (exit code {proc.exitcode})"
  finally:
    proc.kill()
    proc.join()
    recv.close()


class CallableEvaluator:
  """Calls `objective(params) -> float`: an exception is a crash, NaN/inf diverged; with `timeout_s`, in a forked
  child that is killed after that many seconds (a timeout)."""

  def __init__(self, space: Space, objective: Callable[[dict], float], digest: str, timeout_s: float | None = None):
    self.space, self.objective, self.env_digest, self.timeout_s = space, objective, digest, timeout_s

  def evaluate(self, tree: Any, trial_id: str, context: EvalContext, replicate: int = 0) -> EvalResult:
    del trial_id, context, replicate  # the objective takes no seed
    params = self.space.to_params(tree)
    if self.timeout_s is None:
      status, score, text = _call(self.objective, params)
    else:
      status, score, text = _call_in_child(self.objective, params, self.timeout_s)
    if status != Status.OK:
      return EvalResult(status=status, score=None, metrics={"log_tail": text, "error": text.strip().splitlines()[-1]})
    if not math.isfinite(score):
      return EvalResult(status=Status.DIVERGED, score=None)
    return EvalResult(status=Status.OK, score=score)


def _code_digest(code: types.CodeType) -> str:
  h = hashlib.sha256(code.co_code + repr(code.co_names).encode())
  for c in code.co_consts:   # nested functions are code constants; frozenset order varies between processes
    h.update((_code_digest(c) if isinstance(c, types.CodeType) else
              repr(sorted(map(repr, c))) if isinstance(c, frozenset) else repr(c)).encode())
  return h.hexdigest()


def objective_id(objective: Callable[[dict], float]) -> dict[str, str]:
  """What identifies an objective across runs: module.qualname and a hash of its code (not of its line numbers)."""
  fn = objective.func if isinstance(objective, functools.partial) else objective
  code = getattr(fn, "__code__", None) or getattr(getattr(type(fn), "__call__", None), "__code__", None)
  name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
  module = getattr(fn, "__module__", None) or type(fn).__module__
  return {"objective": f"{module}.{name}", "code": _code_digest(code)[:16] if code else ""}


def _check_run_dir(run_dir: str, identity: dict[str, str]) -> None:
  """RUN_DIR/search.json pins the objective and the space: a search never mixes scores of two of them."""
  path = os.path.join(run_dir, "search.json")
  if not os.path.exists(path):
    write_json_atomic(path, identity)
    return
  try:
    with open(path) as f:
      stored = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read {path}: {e}") from None
  if not isinstance(stored, dict):
    raise ValueError(f"{path}: expected a JSON object")
  if (stored.get("objective"), stored.get("code")) != (identity["objective"], identity["code"]):
    raise ValueError(f"run_dir {run_dir} holds a search of objective {stored.get('objective')} (code "
                     f"{stored.get('code')}), not {identity['objective']} (code {identity['code']}); pass that "
                     f"objective unchanged to resume, or use another run_dir ({path})")
  if stored.get("space") != identity["space"]:
    raise ValueError(f"run_dir {run_dir} holds a search over another space (its fields, choices or defaults "
                     f"differ); pass the same space to resume, or use another run_dir ({path})")


def as_space(space: Space | dict) -> Space:
  if isinstance(space, Space):
    return space
  if isinstance(space, dict):
    return Space.from_dict(space)
  raise TypeError(f"space must be an arrl Space or a dict spec, got {type(space).__name__}")


def search(space: Space | dict, objective: Callable[[dict], float], agent: str = "random", max_trials: int = 100,
           seed: int = 0, run_dir: str | None = None, noise_repeats: int = 1, false_keep: float = 0.05,
           confirm: int = 0, agent_kwargs: dict | None = None, trial_timeout_s: float | None = None,
           workers: int = 1) -> SearchResult:
  """Minimise `objective` over `space` with `agent` for `max_trials` evaluated programs.

  The first trial evaluates the space's default program (`noise_repeats` times). Programs already
  measured are not evaluated again (they appear as cached trials and do not count toward max_trials).
  A candidate is kept by `arrl.keep.KeepRule(false_keep)`; `confirm` (default 0) re-evaluates one that
  passes that many times first. The default is 0 because the objective gets no seed: a deterministic
  one would return the same value again. For a noisy objective, `noise_repeats` >= 2 and `confirm` >= 1
  give the keep test a noise estimate and the stated false-keep rate.
  `run_dir` keeps the ledger; rerunning with the same run_dir (same objective and space) resumes.
  `trial_timeout_s`: run each call in a forked child and record a timeout after that many seconds
  (see the module docstring for which objectives qualify).

  `workers` > 1 evaluates that many programs at once (asynchronous: a free worker gets the next proposal at
  once), each call from its own thread. In-process, this pays off for objectives that are thread-safe and
  spend their time outside the Python interpreter's lock: waiting on a subprocess, a remote job or I/O, or
  inside numpy, JAX or another library that releases the GIL; a pure-Python objective gains nothing. With
  `trial_timeout_s` each call runs in its own forked process, so pure-Python objectives run in parallel
  too (they must be fork-safe, as above). Trial order then depends on timing, so the same seed no longer
  gives the same trials.
  """
  if max_trials < 1:
    raise ValueError("max_trials must be >= 1")
  if trial_timeout_s is not None and not (isinstance(trial_timeout_s, (int, float)) and 0 < trial_timeout_s < math.inf):
    raise ValueError(f"trial_timeout_s must be a positive finite number of seconds or None, got {trial_timeout_s!r}")
  sp = as_space(space)
  name = getattr(objective, "__qualname__", type(objective).__name__)
  digest = hashlib.sha256(f"{name}|{tree_lib.to_json(sp.default())}".encode()).hexdigest()[:16]
  agent_kwargs = {**(run_dir_options(agent, run_dir) if run_dir is not None else {}), **(agent_kwargs or {})}
  tmp = lock = None
  if run_dir is None:
    tmp = tempfile.TemporaryDirectory(prefix="arrl-search-")
    run_dir = tmp.name
  else:
    lock = RunDirLock(run_dir).acquire()
  try:
    if lock is not None:
      _check_run_dir(run_dir, {**objective_id(objective), "space": sp.grammar.fingerprint()})
    loop = SearchLoop(sp, CallableEvaluator(sp, objective, digest, trial_timeout_s),
                      make_agent(agent, seed=seed, **agent_kwargs), run_dir,
                      Oracle(max_experiments=max_trials, patience=None),
                      LoopConfig(noise_repeats=noise_repeats, false_keep=false_keep, confirm=confirm,
                                 durable=tmp is None), workers=workers)
    reason = loop.run()
    trials = [Trial(trial_id=r.trial_id, params=sp.to_params(r.tree), score=r.score, status=r.status, cached=r.cached)
              for r in loop.ledger.records()]
  finally:
    if tmp is not None:
      tmp.cleanup()
    if lock is not None:
      lock.release()
  scored = [t for t in trials if t.score is not None]
  if not scored:
    raise RuntimeError(f"no trial produced a score ({len(trials)} trials; first status: {trials[0].status})")
  best = min(scored, key=lambda t: t.score)
  return SearchResult(best=best, trials=trials, stop_reason=reason, run_dir=run_dir if tmp is None else "")
