"""The public search API: any space, any objective, any agent.

    result = arrl.search({"op": {"choices": ["conv3", "skip"]}, "lr": {"choices": [0.01, 0.02]}},
                         lambda p: my_loss(p["op"], p["lr"]), agent="evolution", max_trials=100, seed=0)
    result.best.params, result.best.score, [t.score for t in result.trials]

Same seed, same space, same objective: same trials.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import tempfile
import traceback
from typing import Any, Callable

from arrl import tree as tree_lib
from arrl.agents import make_agent, run_dir_options
from arrl.loop import EvalResult, LoopConfig, SearchLoop
from arrl.oracle import Oracle
from arrl.space import Space


@dataclasses.dataclass(frozen=True)
class Trial:
  trial_id: str
  params: dict[str, Any]
  score: float | None          # None when the objective raised or returned a non-finite value
  status: str                  # baseline | keep | discard | crash | diverged
  cached: bool                 # True when the program had been measured before (not re-evaluated)


@dataclasses.dataclass(frozen=True)
class SearchResult:
  best: Trial
  trials: list[Trial]
  stop_reason: str
  run_dir: str


class CallableEvaluator:
  """Calls `objective(params) -> float` in-process: an exception is a crash, NaN/inf diverged."""

  def __init__(self, space: Space, objective: Callable[[dict], float], digest: str):
    self.space, self.objective, self.env_digest = space, objective, digest

  def evaluate(self, tree: Any, trial_id: str, best: dict | None, sigma: float) -> EvalResult:
    del trial_id, best, sigma
    try:
      score = float(self.objective(self.space.to_params(tree)))
    except Exception as e:  # the objective is user code: record, never crash the loop
      return EvalResult(status="crash", score=None, metrics={"log_tail": traceback.format_exc(limit=3)[-2000:],
                                                              "note": repr(e)})
    if not math.isfinite(score):
      return EvalResult(status="diverged", score=None)
    return EvalResult(status="ok", score=score)


def as_space(space: Space | dict) -> Space:
  if isinstance(space, Space):
    return space
  if isinstance(space, dict):
    return Space.from_dict(space)
  raise TypeError(f"space must be an arrl Space or a dict spec, got {type(space).__name__}")


def search(space: Space | dict, objective: Callable[[dict], float], agent: str = "random", max_trials: int = 100,
           seed: int = 0, run_dir: str | None = None, noise_repeats: int = 1, keep_k: float = 2.0,
           agent_kwargs: dict | None = None) -> SearchResult:
  """Minimise `objective` over `space` with `agent` for `max_trials` evaluated programs.

  The first trial evaluates the space's default program (`noise_repeats` times). Programs already
  measured are not evaluated again (they appear as cached trials and do not count toward max_trials).
  `run_dir` keeps the ledger; rerunning with the same run_dir resumes.
  """
  if max_trials < 1:
    raise ValueError("max_trials must be >= 1")
  sp = as_space(space)
  name = getattr(objective, "__qualname__", type(objective).__name__)
  digest = hashlib.sha256(f"{name}|{tree_lib.to_json(sp.default())}".encode()).hexdigest()[:16]
  agent_kwargs = {**(run_dir_options(agent, run_dir) if run_dir is not None else {}), **(agent_kwargs or {})}
  tmp = None
  if run_dir is None:
    tmp = tempfile.TemporaryDirectory(prefix="arrl-search-")
    run_dir = tmp.name
  try:
    loop = SearchLoop(sp, CallableEvaluator(sp, objective, digest), make_agent(agent, seed=seed,
                                                                             **agent_kwargs),
                      run_dir, Oracle(max_experiments=max_trials, patience=None), LoopConfig(noise_repeats=noise_repeats,
                                                                              keep_k=keep_k,
                                                                              durable=tmp is None))
    reason = loop.run()
    trials = [Trial(trial_id=r["trial_id"], params=sp.to_params(tree_lib.from_json(r["program"])),
                    score=r.get("val_bpb"), status=r["status"], cached=bool(r.get("cached")))
              for r in loop.ledger.records()]
  finally:
    if tmp is not None:
      tmp.cleanup()
  scored = [t for t in trials if t.score is not None]
  if not scored:
    raise RuntimeError(f"no trial produced a score ({len(trials)} trials; first status: {trials[0].status})")
  best = min(scored, key=lambda t: t.score)
  return SearchResult(best=best, trials=trials, stop_reason=reason, run_dir=run_dir if tmp is None else "")
