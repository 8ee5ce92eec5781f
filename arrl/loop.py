"""The perpetual search loop: propose, run, record, learn — until the oracle says stop.

Crash safety. Before a trial runs, the loop saves `state.json` (atomically) with the agent's state
*after* proposing and the pending proposal. The finished trial goes to the append-only ledger, then
the agent observes it and the state is saved again without the pending trial. On resume:
  - a pending trial already in the ledger is observed from its record (never run twice);
  - a pending trial not in the ledger is run again (the trial in flight is the only loss).
So a kill -9 at any moment loses at most the trial in flight and never duplicates a finished one.

Nothing read from the run directory is trusted: state.json is type-checked, every program (current,
pending, ledger) is validated against the space, and trial ids come from a counter saved in state.json
(an id read back must be 6+ digits). A state that no longer matches the ledger (a torn record it had
counted, a best trial missing) or a missing state.json beside a non-empty ledger is rebuilt by replaying
the ledger, with a note on stderr; an id seen in a torn tail is never given out again.

Keep/discard (`arrl.keep`). A candidate whose first run passes the keep test is re-run `confirm` more times
(run r of a program uses data-order seed `seed + r`) and kept only if the test passes again on the mean of
all its runs. Its first run is saved in the pending trial (`first_run`) before the confirmations start;
each confirmation is its own ledger row (status `confirm`, id `<trial_id>-c<i>`, field `confirms`), and
the candidate's row, with the decision and `mean_val_bpb`, is appended last. So a kill during a
confirmation loses only that run. sigma pools every program measured more than once; the kept best's
score is the mean of all runs of its program.

Parallel workers (`workers` > 1). Up to N trials are in flight at once, each on its own thread calling the
evaluator (whose executor gives each its own GPU(s) or cores). There is no batch barrier: as soon as one
trial ends it is recorded and the agent observes it, and the freed worker gets the next proposal
(`arrl.agents.base.propose_batch`: never a program in flight). The noise baselines run in parallel too;
candidates wait until the noise is known. One lock serialises everything but the evaluation itself, so
records, decisions and agent updates happen one trial at a time, in completion order. `state.json` holds
every trial in flight (`in_flight`), saved before it starts: after a kill -9 each one is observed from
its ledger record if it finished, else rerun under its id, so the trials in flight are the only loss and
no trial id is ever duplicated. `elapsed_s` (--max-hours) counts the run's wall-clock hours, not the sum of
the overlapping trials. With one worker the loop is the sequential one above.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
import sys
import threading
import time
from typing import Any, Callable, Protocol

import numpy as np

from arrl import tree as tree_lib
from arrl.agents.base import Agent, Outcome, Proposal, SearchState, propose_batch
from arrl.io import write_json_atomic
from arrl.keep import DEFAULT_FALSE_KEEP, KeepRule, NoiseModel
from arrl.ledger import Ledger
from arrl.oracle import Oracle
from arrl.space import Space
from arrl.trial import EvalContext, Pending, Status, TrialRecord, check_types

STATE_FILE = "state.json"
MAX_BASELINE_FAILURES = 3   # the default program failing this often in a row stops the run: nothing to compare to
BASELINE_FAILED = "baseline-failed"
TRIAL_ID = re.compile(r"\d{6,}")
_NUM = (int, float)
_STATE_TYPES: dict[str, tuple[type, ...]] = {   # state.json field -> accepted JSON types
    "env_digest": (str,), "agent_name": (str,), "agent": (dict,), "current": (str,), "best_id": (str, type(None)),
    "best_score": (*_NUM, type(None)), "baseline_scores": (list,), "sigma": _NUM, "pending": (dict, type(None)),
    "elapsed_s": _NUM, "executed": (int,), "cached_in_a_row": (int,)}
MAX_CACHED_IN_A_ROW = 200   # an agent that only re-proposes measured programs has exhausted the space


class LoopError(ValueError):
  """The loop cannot go on (one line for the user), e.g. the agent proposes a program off the space."""


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  noise_repeats: int = 2         # baseline runs to estimate the run-to-run spread sigma
  false_keep: float = DEFAULT_FALSE_KEEP  # the keep test's rate of keeping a candidate that is no better
  confirm: int = 1               # extra runs (other seeds) of a candidate that passes, before it is kept
  remeasure: bool = False        # re-run programs already in the ledger
  durable: bool = True           # fsync ledger and state; off only for throw-away runs, which never resume
                                 # and so skip state.json too (arrl.search without a run_dir)

  def __post_init__(self) -> None:
    if self.noise_repeats < 1 or self.confirm < 0:
      raise ValueError(f"need noise_repeats >= 1 and confirm >= 0, got {self.noise_repeats}, {self.confirm}")
    KeepRule(self.false_keep)  # validates the rate


@dataclasses.dataclass
class EvalResult:
  status: Status                 # ok | crash | diverged | timeout | compile-timeout | aborted
  score: float | None            # lower is better (e.g. val-bpb); None unless ok
  metrics: dict = dataclasses.field(default_factory=dict)  # the record's metrics (TrialRecord.metrics)


class Evaluator(Protocol):
  env_digest: str

  def evaluate(self, tree: Any, trial_id: str, context: EvalContext, replicate: int = 0) -> EvalResult:
    """Run `tree`; `context` holds the noise and the kept best to compare with (for early abort); `replicate`
    numbers the runs of one program (0, 1, ...): a noisy objective should use another seed for each."""



def is_baseline(rec: TrialRecord) -> bool:
  """Whether a record is a run of the default program for the noise estimate (ok or failed)."""
  return rec.description == "baseline" and rec.parent_tree is None


def error_line(rec: TrialRecord) -> str:
  """The last line of a failed trial's error (else of its log tail): what the user needs to see first."""
  for text in (rec.metrics.get("error"), rec.metrics.get("log_tail")):
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    if lines:
      return lines[-1][:300]
  return ""


class _Unlocked:
  """Evaluator proxy for parallel workers: the loop's lock is released while a trial runs."""

  def __init__(self, inner: Evaluator, lock: threading.Lock):
    self.inner, self.lock = inner, lock

  def __getattr__(self, name: str) -> Any:
    return getattr(self.inner, name)

  def evaluate(self, *args: Any, **kwargs: Any) -> EvalResult:
    self.lock.release()
    try:
      return self.inner.evaluate(*args, **kwargs)
    finally:
      self.lock.acquire()


class SearchLoop:
  def __init__(self, space: Space, evaluator: Evaluator, agent: Agent, run_dir: str, oracle: Oracle,
               config: LoopConfig = LoopConfig(), initial: Any = None, force: bool = False,
               on_trial: Callable[["SearchLoop", TrialRecord], None] | None = None, workers: int = 1):
    if workers < 1:
      raise ValueError(f"workers must be >= 1, got {workers}")
    self.space, self.evaluator, self.agent, self.oracle, self.config = space, evaluator, agent, oracle, config
    self.workers = workers
    self.run_dir = run_dir
    self.on_trial = on_trial
    os.makedirs(run_dir, exist_ok=True)
    self.ledger = Ledger(run_dir, durable=config.durable)
    self.state_path = os.path.join(run_dir, STATE_FILE)
    self.current = initial if initial is not None else space.default()
    self.best: TrialRecord | None = None   # the kept best (its loss curve feeds early abort)
    self.best_score: float | None = None   # the score to beat (the baseline's mean, then the kept best's)
    self.baseline_scores: list[float] = []
    self.sigma = 0.0
    self.history: list[Outcome] = []
    self.pending: Pending | None = None    # the trial in flight (one worker)
    self.in_flight: list[Pending] = []     # the trials in flight (parallel workers), oldest first
    self.elapsed_s = 0.0
    self.executed = 0                      # trials actually run (cached ones excluded)
    self.cached_in_a_row = 0
    self.next_id = self._first_free_id()   # trial ids: generated, never reused (torn tails included)
    self.absorbed = 0                      # ledger records learned from (a state that disagrees is rebuilt)
    self._wall: tuple[float, float] | None = None   # parallel run: (monotonic start, elapsed_s at start)
    self._baseline_failures = 0            # the default program's failures in a row, in this process
    if os.path.exists(self.state_path):
      self._resume(force)
    elif config.durable and len(self.ledger):
      last = self.ledger.records()[-1].env_digest
      if last != self.evaluator.env_digest and not force:
        raise ValueError(f"{self.state_path} is missing and {self.ledger.path} was run in frozen environment {last}, "
                         f"not {self.evaluator.env_digest}; results would not compare. Use a new --run-dir, or --force")
      self._rebuild(f"{self.state_path} is missing")
    else:
      self._save()

  # ---- persistence -------------------------------------------------------------------------------
  def _save(self) -> None:
    if not self.config.durable:
      return
    write_json_atomic(self.state_path, {
        "env_digest": self.evaluator.env_digest, "agent_name": self.agent.name,
        "agent": self.agent.state_dict(), "current": tree_lib.to_json(self.current),
        "best_id": self.best.trial_id if self.best else None, "best_score": self.best_score,
        "baseline_scores": self.baseline_scores, "sigma": self.sigma,
        "pending": self.pending.to_dict() if self.pending else None, "elapsed_s": self.elapsed_s,
        "executed": self.executed, "cached_in_a_row": self.cached_in_a_row, "next_id": self.next_id,
        "absorbed": self.absorbed, "in_flight": [p.to_dict() for p in self.in_flight],
    })

  def _first_free_id(self) -> int:
    ids = self.ledger.reserved_ids() | {r.trial_id for r in self.ledger.records()}
    return 1 + max((int(t) for t in ids if TRIAL_ID.fullmatch(t)), default=-1)

  def _valid(self, tree: Any, where: str) -> Any:
    """A program read from disk, validated against the space (so nothing off the grid ever runs)."""
    try:
      self.space.validate(tree)
    except ValueError as e:
      raise ValueError(f"{where}: {e}") from None
    return tree

  def _check_trees(self, item: TrialRecord | Pending, where: str) -> None:
    self._valid(item.tree, f"{where} program")
    if item.parent_tree is not None:
      self._valid(item.parent_tree, f"{where} parent_program")

  def _check_ledger(self) -> None:
    for rec in self.ledger.records():
      self._check_trees(rec, f"{self.ledger.path}: trial {rec.trial_id}")

  def _resume(self, force: bool) -> None:
    try:
      with open(self.state_path) as f:
        st = json.load(f)
    except (OSError, ValueError) as e:
      raise ValueError(f"cannot read {self.state_path}: {e}") from e
    check_types(st, _STATE_TYPES, self.state_path)
    if st["env_digest"] != self.evaluator.env_digest and not force:
      raise ValueError(f"frozen-environment digest changed ({st['env_digest']} -> {self.evaluator.env_digest}); "
                       "results would not compare. Use a new --run-dir, or --force to resume anyway")
    if st["agent_name"] != self.agent.name:
      raise ValueError(f"run directory was made by agent {st['agent_name']!r}, not {self.agent.name!r}")
    optional = {"next_id": (int,), "absorbed": (int,), "in_flight": (list,)}   # absent in older states
    check_types(st, optional, self.state_path, required=False)
    self.next_id = max(self.next_id, st.get("next_id", 0))
    records = self.ledger.records()
    pend, in_flight = st["pending"], st.get("in_flight", [])
    waiting = {p.get("trial_id") for p in [pend, *in_flight] if isinstance(p, dict)}
    # Rows of trials still waiting to be learned from: their confirmations, and at most one finished row
    # (trials are recorded and learned one at a time); with parallel workers other rows may lie between them.
    unlearned = sum(r.trial_id in waiting or r.confirms in waiting for r in records)
    absorbed = st.get("absorbed", len(records) - unlearned)   # older states did not count
    if absorbed != len(records) - unlearned:
      return self._rebuild(f"{self.state_path} counts {absorbed} finished trials, {self.ledger.path} has "
                           f"{len(records) - unlearned}")
    if st["best_id"] is not None and st["best_id"] not in {r.trial_id for r in records}:
      return self._rebuild(f"the best trial {st['best_id']!r} of {self.state_path} is not in {self.ledger.path}")
    self._check_ledger()
    try:
      self.agent.load_state_dict(st["agent"])
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"{self.state_path}: the {st['agent_name']} agent's state is not usable ({e!r:.200})") from None
    where = f"{self.state_path}: current"
    self.current = self._valid(self._decode(st["current"], where), where)
    self.baseline_scores, self.sigma = st["baseline_scores"], st["sigma"]
    self.pending = self._check_pending(pend) if pend is not None else None
    self.in_flight = [self._check_pending(p) for p in in_flight]
    fresh = self.pending is not None and self.pending.trial_id != pend["trial_id"] or any(
        p.trial_id != d.get("trial_id") for p, d in zip(self.in_flight, in_flight))
    self.elapsed_s = st["elapsed_s"]
    self.executed, self.cached_in_a_row = st["executed"], st["cached_in_a_row"]
    self.best = next((r for r in records if r.trial_id == st["best_id"]), None)
    self.best_score = st["best_score"]
    self.history = [self._outcome(r) for r in records if r.status != Status.BASELINE and not r.confirms]
    self.absorbed = absorbed
    if fresh:
      self._save()   # a trial in flight got a fresh id

  def _decode(self, text: Any, where: str) -> Any:
    try:
      if not isinstance(text, str):
        raise ValueError(f"expected a tree JSON string, got {type(text).__name__}")
      return tree_lib.from_json(text)
    except ValueError as e:
      raise ValueError(f"{where}: {e}") from None

  def _check_pending(self, data: Any) -> Pending:
    where = f"{self.state_path}: pending"
    pend = Pending.from_dict(data, where)
    tid = pend.trial_id
    if not TRIAL_ID.fullmatch(tid):
      raise ValueError(f"{where}: trial_id {tid!r:.60} is not a trial id (6 or more digits)")
    self._check_trees(pend, where)
    digest = tree_lib.digest(pend.tree)
    done = [r for r in self.ledger.records() if r.trial_id == tid]
    if done and done[0].digest != digest:
      raise ValueError(f"{where}: trial {tid} is in {self.ledger.path} with another program; "
                       f"delete {self.state_path} to rebuild the state from the ledger")
    if not done and tid in self.ledger.reserved_ids():   # its record was torn: rerun it under a fresh id
      return dataclasses.replace(pend, trial_id=self._new_id(), first_run=None)
    first = pend.first_run
    if first is not None and (first.trial_id != tid or first.digest != digest or first.run_status != Status.OK
                              or first.score is None or first.cached or first.replicate is None):
      raise ValueError(f"{where}: first_run is not a run of trial {tid} that passed the keep test; delete "
                       f"{self.state_path} to rebuild the state from the ledger")
    return pend

  def _rebuild(self, why: str) -> None:
    """Replays the ledger into a fresh state: baselines, sigma, best, current, counts, history, agent."""
    self._check_ledger()
    records = self.ledger.records()
    print(f"note: {why}; rebuilding the search state from {self.ledger.path} ({len(records)} trials); the "
          f"agent is replayed their outcomes, so its next proposals may differ from an uninterrupted run",
          file=sys.stderr)
    on_trial, self.on_trial = self.on_trial, None
    ids = {r.trial_id for r in records}
    for rec in records:
      if not rec.confirms:   # confirmations are learned with the trial they confirm ...
        self._learn(is_baseline(rec), rec)
      elif rec.confirms not in ids:   # ... or, when its record was torn, only counted
        self._count_run(rec)
    self.on_trial = on_trial
    self.absorbed = len(records)    # confirmations of a trial that was never recorded included
    self._save()

  # ---- one trial ---------------------------------------------------------------------------------
  def _outcome(self, rec: TrialRecord) -> Outcome:
    return Outcome(trial_id=rec.trial_id, tree=rec.tree, parent=rec.parent_tree, edits=rec.edits, status=rec.status,
                   score=rec.agent_score, kept=rec.kept, best_before=rec.best_before, sigma=rec.sigma, info=rec.agent)

  def state(self) -> SearchState:
    return SearchState(space=self.space, current=self.current,
                       best_score=self.best_score, sigma=self.sigma,
                       history=self.history, budget_used=self.oracle.budget_used(self.executed, self.elapsed_s),
                       in_flight=tuple(p.tree for p in self.in_flight))

  def _new_id(self) -> str:
    self.next_id += 1
    return f"{self.next_id - 1:06d}"

  def _propose(self) -> Pending:
    if self.best_score is None:
      return self._baseline(len(self.baseline_scores))
    return self._pending(self._ask(1)[0], baseline=False)

  def _ask(self, n: int) -> list[Proposal]:
    """Up to n proposals of the agent (with nothing in flight and n = 1, its plain `propose`)."""
    try:   # agent state is read from disk too: nothing off the space runs, whatever its source
      state = self.state()
      props = [self.agent.propose(state)] if n == 1 and not self.in_flight else propose_batch(self.agent, state, n)
      for prop in props:
        self.space.validate(prop.tree)
    except ValueError as e:
      raise LoopError(f"agent {self.agent.name} cannot propose a program on the space ({e}); if "
                      f"{self.state_path} was edited, delete it to rebuild the state from the ledger") from None
    return props

  def _baseline(self, index: int) -> Pending:
    return self._pending(Proposal(tree=self.current, parent=None, info={"baseline": index}), baseline=True)

  def _pending(self, prop: Proposal, baseline: bool) -> Pending:
    return Pending(
        trial_id=self._new_id(), baseline=baseline, tree=prop.tree, parent_tree=prop.parent,
        edits=tuple(e.to_dict() for e in prop.edits), agent=prop.info,
        description=("baseline" if baseline else
                     tree_lib.diff(prop.parent, prop.tree) if prop.parent is not None else "random sample"))

  def _cached(self, digest: str) -> TrialRecord | None:
    if self.config.remeasure:
      return None
    return next((r for r in self.ledger.find_digest(digest) if not r.cached), None)

  def _recorded(self, trial_id: str, digest: str) -> TrialRecord | None:
    return next((r for r in self.ledger.find_digest(digest) if r.trial_id == trial_id), None)

  def measurements(self, exclude: str | None = None) -> dict[str, list[float]]:
    """The score of every successful run, by program digest (confirmations of trial `exclude` left out)."""
    groups: dict[str, list[float]] = {}
    for r in self.ledger.records():
      if r.run_status == Status.OK and not r.cached and (exclude is None or r.confirms != exclude):
        groups.setdefault(r.digest, []).append(r.score)
    return groups

  def noise(self) -> NoiseModel:
    """sigma pooled over every program measured more than once (baselines, confirmations, re-measurements)."""
    return NoiseModel.from_groups(list(self.measurements().values()))

  def step(self) -> TrialRecord:
    """Propose (or resume the pending trial), run, record, learn. Returns the trial's record."""
    if self.pending is None:
      self.pending = self.in_flight[0] if self.in_flight else self._propose()   # resumed from parallel workers
      self._save()
    return self.complete(self.pending)

  def complete(self, pend: Pending) -> TrialRecord:
    """Run the pending trial (or find it in the ledger: never run twice), record it, let the agent observe it."""
    rec = self._recorded(pend.trial_id, tree_lib.digest(pend.tree)) or self._finish(pend)
    self._learn(pend.baseline, rec)
    return rec

  def _measure(self, pend: Pending, trial_id: str, replicate: int | None, best: TrialRecord | None) -> TrialRecord:
    """One run of the pending program (or its cached result), not judged yet: its status is the run's."""
    digest = tree_lib.digest(pend.tree)
    prior = None if pend.baseline or replicate is not None else self._cached(digest)
    t0 = time.time()
    if prior is not None:
      res = EvalResult(status=prior.run_status, score=prior.score,
                       metrics={k: prior.metrics.get(k) for k in ("training_seconds", "compile_seconds",
                                                                   "peak_memory_mb", "total_tokens_M", "num_steps")})
    else:
      if replicate is None:  # run r of a program (failed runs count): r differs for every run, resumed or not
        replicate = sum(not r.cached for r in self.ledger.find_digest(digest))
      res = self.evaluator.evaluate(pend.tree, trial_id, EvalContext.from_record(best, self.sigma), replicate=replicate)
    status = Status(res.status)
    return TrialRecord(
        trial_id=trial_id, status=status, tree=pend.tree, digest=digest, run_status=status, score=res.score,
        parent_tree=pend.parent_tree, parent=self.best.trial_id if self.best else None, edits=pend.edits,
        description=pend.description, agent=pend.agent, replicate=replicate, cached=prior is not None,
        best_before=self.best_score, sigma=self.sigma, env_digest=self.evaluator.env_digest, started_at=t0,
        finished_at=time.time(), metrics=res.metrics)

  def _judge(self, pend: Pending, cand_runs: list[float]) -> tuple[bool, float]:
    """(keep?, margin): the candidate's runs against all runs of the best's program."""
    groups = self.measurements(exclude=pend.trial_id)
    best_runs = groups.get(self.best.digest, []) if self.best else []
    if not best_runs:
      return True, 0.0
    noise = NoiseModel.from_groups(list(groups.values()) + [cand_runs])
    rule = KeepRule(self.config.false_keep)
    return rule.keep(best_runs, cand_runs, noise), rule.margin(noise, len(cand_runs), len(best_runs))

  def _confirmation(self, pend: Pending, first: TrialRecord, i: int) -> TrialRecord:
    trial_id = f"{pend.trial_id}-c{i}"
    done = self._recorded(trial_id, first.digest)
    if done is not None:
      return done
    run = self._measure(pend, trial_id, first.replicate + i, best=None)  # no early abort: it passed once
    return self.ledger.append(dataclasses.replace(
        run, status=Status.CONFIRM if run.run_status == Status.OK else run.run_status, confirms=pend.trial_id,
        agent={}, description=f"confirms {pend.trial_id}: {pend.description}"))

  def _keep_first_run(self, pend: Pending, run: TrialRecord) -> Pending:
    """Saves the candidate's first run in the pending trial before its confirmations start."""
    pend = dataclasses.replace(pend, first_run=run)
    if self.pending is not None and self.pending.trial_id == pend.trial_id:
      self.pending = pend
    self.in_flight = [pend if p.trial_id == pend.trial_id else p for p in self.in_flight]
    self._save()
    return pend

  def _finish(self, pend: Pending) -> TrialRecord:
    """Run the pending trial and, if it passes, its confirmations; judge it; append its row."""
    run = pend.first_run or self._measure(pend, pend.trial_id, None, self.best)
    if pend.baseline or run.run_status != Status.OK:
      status = Status.BASELINE if pend.baseline and run.run_status == Status.OK else run.run_status
      return self.ledger.append(dataclasses.replace(run, status=status))
    runs, kept, margin, confirmed_by = [run.score], False, None, None
    if not run.cached:  # a cached program is not judged again: nothing new was measured
      kept, margin = self._judge(pend, runs)
      if kept and self.config.confirm:
        if pend.first_run is None:
          pend = self._keep_first_run(pend, run)
        confirms = [self._confirmation(pend, run, i) for i in range(1, self.config.confirm + 1)]
        runs += [c.score for c in confirms if c.run_status == Status.OK]
        kept, margin = self._judge(pend, runs)
        kept = kept and len(runs) == 1 + len(confirms)   # a program that fails on another seed is not kept
        confirmed_by = tuple(c.trial_id for c in confirms)
    return self.ledger.append(dataclasses.replace(
        run, status=Status.KEEP if kept else Status.DISCARD, kept=kept, confirmed_by=confirmed_by,
        keep_margin=margin, mean_score=float(np.mean(runs)), n_runs=len(runs)))

  def _count_run(self, rec: TrialRecord) -> None:
    if not rec.cached:
      self.executed += 1
      self.elapsed_s += rec.finished_at - rec.started_at

  def _learn(self, baseline: bool, rec: TrialRecord) -> None:
    chain = [rec] + [self._recorded(t, rec.digest) for t in rec.confirmed_by or ()]
    self.absorbed += len(chain)
    for r in chain:
      self._count_run(r)
    if self._wall is not None:   # parallel workers: hours of the run, not the sum of overlapping trials
      self.elapsed_s = self._wall[1] + time.monotonic() - self._wall[0]
    self.cached_in_a_row = self.cached_in_a_row + 1 if rec.cached else 0
    if baseline:
      if rec.run_status == Status.OK:
        self.baseline_scores.append(rec.score)
      if len(self.baseline_scores) >= self.config.noise_repeats:
        self.best = rec
    elif rec.kept:
      self.best = rec
      self.current = rec.tree
    if self.best is not None:  # every run of the best's program counts, re-measurements included
      self.sigma = self.noise().sigma
      self.best_score = float(np.mean(self.measurements()[self.best.digest]))
    if not baseline:
      outcome = self._outcome(rec)
      self.history.append(outcome)
      self.agent.observe(self.state(), outcome)
    self.pending = None
    self.in_flight = [p for p in self.in_flight if p.trial_id != rec.trial_id]
    self._save()
    if self.on_trial:
      self.on_trial(self, rec)

  def stop_reason(self, busy: int = 0) -> str | None:
    """Why the loop must not start another trial, counting `busy` trials in flight as run (else None)."""
    reason = self.oracle.check(executed=self.executed + busy, elapsed_s=self.elapsed_s, history=self.history,
                               sigma=self.sigma, entropy=self.agent.entropy())
    if reason is None and self.cached_in_a_row >= MAX_CACHED_IN_A_ROW:
      reason = f"exhausted: {MAX_CACHED_IN_A_ROW} proposals in a row were already measured"
    return reason

  def _baseline_failed(self, rec: TrialRecord) -> str | None:
    """Counts the default program's failures in a row (in this process only: a resume after fixing the cause
    tries again); the stop reason once there are MAX_BASELINE_FAILURES."""
    self._baseline_failures = self._baseline_failures + 1 if is_baseline(rec) and rec.status != Status.BASELINE else 0
    if self._baseline_failures < MAX_BASELINE_FAILURES:
      return None
    return (f"{BASELINE_FAILED}: the default program failed {self._baseline_failures} times in a row "
            f"(trial {rec.trial_id} {rec.status}: {error_line(rec) or 'no error text'})")

  def run(self) -> str:
    """Run until the oracle (or exhaustion, or a baseline that keeps failing) stops the loop; returns the reason."""
    self._baseline_failures = 0
    if self.workers > 1:
      return self._run_parallel()
    while True:
      reason = self.stop_reason()
      if reason:
        return reason
      reason = self._baseline_failed(self.step())
      if reason:
        return reason

  # ---- parallel workers --------------------------------------------------------------------------
  def room(self, busy: int) -> int:
    """How many trials may start now, with `busy` in flight: free workers, within the oracle's limits."""
    if self.stop_reason(busy) is not None:
      return 0
    room = self.workers - busy
    if self.oracle.max_experiments is not None:   # never start more trials than the run has left
      room = min(room, self.oracle.max_experiments - self.executed - busy)
    return room

  def fill(self, free: int) -> list[Pending]:
    """Proposals for up to `free` idle workers, each saved in `in_flight` before it is returned.

    Baselines first (as many as still needed, in parallel); candidates once the noise is known. Fewer (or
    none) when the agent only finds programs in flight: the caller waits for a trial to end.
    """
    new: list[Pending] = []
    if free <= 0:
      return new
    if self.best_score is None:
      started = len(self.baseline_scores) + sum(p.baseline for p in self.in_flight)
      for i in range(min(free, self.config.noise_repeats - started)):
        new.append(self._baseline(started + i))
        self.in_flight.append(new[-1])
    else:
      for prop in self._ask(free):
        new.append(self._pending(prop, baseline=False))
        self.in_flight.append(new[-1])
    if new:
      self._save()
    return new

  def _run_parallel(self) -> str:
    lock = threading.Lock()   # held by whichever thread touches the loop's state; released while trials run
    evaluator, self.evaluator = self.evaluator, _Unlocked(self.evaluator, lock)

    def trial(pend: Pending) -> TrialRecord:
      with lock:
        return self.complete(pend)

    pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="arrl-trial")
    running: dict[concurrent.futures.Future, Pending] = {}
    failed: str | None = None   # the baseline kept failing: start nothing more, let the rest finish
    lock.acquire()
    self._wall = (time.monotonic(), self.elapsed_s)
    try:
      if self.pending is not None:   # resumed from a one-worker run: its pending trial goes first
        self.in_flight = [self.pending, *(p for p in self.in_flight if p.trial_id != self.pending.trial_id)]
        self.pending = None
        self._save()
      for pend in self.in_flight:    # resumed: the trials that were in flight
        running[pool.submit(trial, pend)] = pend
      while True:
        for pend in self.fill(0 if failed else self.room(len(running))):
          running[pool.submit(trial, pend)] = pend
        if not running:   # nothing may start and nothing runs: the oracle (or the baseline) said stop
          return failed or self.stop_reason() or "exhausted: no proposal"
        lock.release()
        try:
          done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
        finally:
          lock.acquire()
        for future in done:
          del running[future]
          failed = failed or self._baseline_failed(future.result())   # a cancelled trial or a bug ends the run
    finally:
      lock.release()
      pool.shutdown(wait=True)   # trials still running finish (or are cancelled) and are recorded
      self.evaluator, self._wall = evaluator, None
