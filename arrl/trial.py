"""The vocabulary of a trial shared by runner, loop, ledger, agents and display: its statuses, the typed record
of a finished run (`TrialRecord`) and of a trial in flight (`Pending`), and what the loop tells an evaluator
about the trial to beat.

`Status` is a `StrEnum`: a member equals, hashes, formats and serialises as its string, so ledgers written
before it existed read the same and JSON on disk is unchanged.

JSON exists only at the run directory's boundary: `TrialRecord.from_dict`/`to_dict` map one ledger line
(`arrl.ledger`) and `Pending.from_dict`/`to_dict` one entry of state.json (`arrl.loop`); inside the loop
trees are `Node`s, decoded once when read. `to_dict` writes the keys in the order the ledger always had
(its `FIELDS`, then the evaluator's extra metrics, then the loop's fields), so a line read and written
again is byte-identical. The score is `score` here and `val_bpb` on disk (nanochat's name, kept for
autoresearch's tools).
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import math
from typing import Any, Sequence

from arrl import tree as tree_lib


class Status(enum.StrEnum):
  OK = "ok"                             # a run's outcome only (`run_status`): the loop turns it into one below
  KEEP = "keep"
  DISCARD = "discard"
  BASELINE = "baseline"                 # a run of the starting program, for the noise estimate
  CONFIRM = "confirm"                   # an extra run of a candidate that passed the keep test once
  CRASH = "crash"
  DIVERGED = "diverged"
  TIMEOUT = "timeout"
  COMPILE_TIMEOUT = "compile-timeout"
  ABORTED = "aborted"                   # stopped early (arrl.abort); scored by its prediction, if any


REPORTABLE = (Status.OK, Status.DIVERGED, Status.COMPILE_TIMEOUT, Status.ABORTED)   # a trial may report these itself
LEDGER_STATUSES = (Status.KEEP, Status.DISCARD, Status.CRASH, Status.DIVERGED, Status.TIMEOUT, Status.COMPILE_TIMEOUT,
                   Status.ABORTED, Status.BASELINE, Status.CONFIRM)
SCORED = (Status.KEEP, Status.DISCARD, Status.BASELINE, Status.CONFIRM)   # the score is a real measurement
FAILED = (Status.CRASH, Status.DIVERGED, Status.TIMEOUT, Status.COMPILE_TIMEOUT)   # no score at all


# Every ledger line has these keys, in this order; missing ones read as these defaults. The evaluator's metrics
# (num_steps, training_seconds, loss_curve, log_tail, error, abort, ...) fill the ones the loop does not own.
FIELDS: dict[str, Any] = {
    "trial_id": None, "parent": None, "program": None, "digest": None, "edits": [], "description": "",
    "status": None, "val_bpb": None, "training_seconds": None, "compile_seconds": None,
    "total_seconds": None, "startup_seconds": None, "peak_memory_mb": None, "total_tokens_M": None,
    "num_steps": None, "env_digest": None, "agent": {}, "abort": None, "loss_curve": [], "log_tail": "",
    "error": None, "started_at": None, "finished_at": None, "kept": False,
}
_NUM = (int, float)
_RECORD_TYPES: dict[str, tuple[type, ...]] = {   # what the loop relies on in a ledger line
    "trial_id": (str,), "status": (str,), "program": (str,), "digest": (str,), "run_status": (str,),
    "val_bpb": (*_NUM, type(None)), "kept": (bool,), "started_at": _NUM, "finished_at": _NUM}
_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {  # ledger fields the loop reads when present
    "parent": (str, type(None)), "parent_program": (str, type(None)), "edits": (list,), "description": (str,),
    "agent": (dict,), "env_digest": (str, type(None)), "cached": (bool,), "replicate": (int, type(None)),
    "best_before": (*_NUM, type(None)), "sigma": _NUM, "confirms": (str,), "confirmed_by": (list,),
    "keep_margin": _NUM, "mean_val_bpb": _NUM, "n_runs": (int,)}
_DECISION_KEYS = ("confirms", "confirmed_by", "keep_margin", "mean_val_bpb", "n_runs")  # written when set


def check_types(obj: Any, types: dict[str, tuple[type, ...]], where: str, required: bool = True) -> None:
  """ValueError naming `where` unless `obj` is a JSON object whose `types` keys have those JSON types
  (a bool is not an int); with required=False absent keys pass."""
  if not isinstance(obj, dict):
    raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
  for key, accepted in types.items():
    if key not in obj:
      if required:
        raise ValueError(f"{where}: field {key!r} is missing")
      continue
    value = obj[key]
    if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
      names = " or ".join("null" if t is type(None) else t.__name__ for t in accepted)
      raise ValueError(f"{where}: field {key!r} must be {names}, got {value!r:.60}")


def _status(value: str, where: str) -> Status:
  try:
    return Status(value)
  except ValueError:
    raise ValueError(f"{where}: status {value!r:.60} is not one of {', '.join(Status)}") from None


def _tree(text: str, where: str) -> tree_lib.Node:
  try:
    return tree_lib.from_json(text)
  except ValueError as e:
    raise ValueError(f"{where}: {e}") from None


@dataclasses.dataclass(frozen=True)
class TrialRecord:
  """One run of one program, as the loop measured and judged it: a ledger line (see the module docstring).

  A run measured but not judged yet (a candidate's first run awaiting its confirmations) has its run's status
  (`ok`, ...) as `status`; the ledger stores only decided ones. The dicts are shared: never mutate them.
  """
  trial_id: str
  status: Status
  tree: tree_lib.Node
  digest: str
  run_status: Status                       # the run's own outcome (ok, crash, ...), before the loop's decision
  score: float | None = None               # this run's score, lower is better; None unless the run was ok
  kept: bool = False
  parent_tree: tree_lib.Node | None = None  # the program it was edited from (None: a baseline or a fresh sample)
  parent: str | None = None                # the kept best when it ran (its trial id)
  edits: tuple[dict, ...] = ()             # the edits from parent_tree, as `Edit.to_dict`
  description: str = ""
  agent: dict = dataclasses.field(default_factory=dict)   # the proposing agent's data
  replicate: int | None = None             # run r of its program (seed + r); None for a cached result
  cached: bool = False                     # the program's earlier result, not a new run
  best_before: float | None = None         # the score to beat when it was judged
  sigma: float = 0.0                       # the noise the keep test used
  confirms: str | None = None              # a confirmation run: the id of the trial it confirms
  confirmed_by: tuple[str, ...] | None = None   # a candidate's confirmation runs
  keep_margin: float | None = None
  mean_score: float | None = None          # the mean of a judged candidate's runs
  n_runs: int | None = None
  env_digest: str | None = None
  started_at: float = 0.0                  # unix time
  finished_at: float = 0.0
  metrics: dict = dataclasses.field(default_factory=dict)  # the evaluator's fields: num_steps, loss_curve, ...

  def __post_init__(self) -> None:
    tid = self.trial_id
    if not isinstance(tid, str) or not tid or any(c.isspace() for c in tid):
      raise ValueError(f"trial_id must be a non-empty string without whitespace, got {tid!r}")
    if not isinstance(self.kept, bool):
      raise ValueError(f"kept must be a bool, got {self.kept!r}")
    if self.kept != (self.status == Status.KEEP):
      raise ValueError(f"kept={self.kept} contradicts status={str(self.status)!r} (kept iff status is 'keep')")
    # The record's own fields are not metrics (an evaluator's val_bpb or started_at are the loop's to set), and
    # a ledger field at its default is the same line whether given or not: records compare equal either way.
    object.__setattr__(self, "metrics", {k: v for k, v in self.metrics.items()
                                         if k not in _OWN_KEYS and (k not in FIELDS or v != FIELDS[k])})

  @property
  def agent_score(self) -> float | None:
    """The score an agent learns from: a judged candidate's mean over its runs, an early-aborted run's
    predicted score (nanochat's abort record), else the run's score."""
    if self.status == Status.ABORTED and self.metrics.get("abort"):
      return self.metrics["abort"].get("predicted_val_bpb")
    return self.mean_score if self.mean_score is not None else self.score

  def to_dict(self) -> dict[str, Any]:
    """The ledger line's JSON object."""
    own = {"trial_id": self.trial_id, "parent": self.parent, "program": tree_lib.to_json(self.tree),
           "digest": self.digest, "edits": list(self.edits), "description": self.description,
           "status": str(self.status), "val_bpb": self.score, "env_digest": self.env_digest, "agent": self.agent,
           "started_at": self.started_at, "finished_at": self.finished_at, "kept": self.kept}
    out = {k: own[k] if k in own else self.metrics.get(k, copy.deepcopy(v)) for k, v in FIELDS.items()}
    out.update((k, v) for k, v in self.metrics.items() if k not in FIELDS)
    out.update(parent_program=None if self.parent_tree is None else tree_lib.to_json(self.parent_tree),
               run_status=str(self.run_status), cached=self.cached, replicate=self.replicate,
               best_before=self.best_before, sigma=self.sigma)
    decision = (self.confirms, None if self.confirmed_by is None else list(self.confirmed_by), self.keep_margin,
                self.mean_score, self.n_runs)
    out.update((k, v) for k, v in zip(_DECISION_KEYS, decision) if v is not None)
    return out

  @classmethod
  def from_dict(cls, d: Any, where: str) -> "TrialRecord":
    """The record of a ledger line's JSON object; ValueError naming `where` when the loop could not use it."""
    check_types(d, _RECORD_TYPES, where)
    check_types(d, _OPTIONAL_TYPES, where, required=False)
    parent = d.get("parent_program")
    confirmed_by = d.get("confirmed_by")
    return cls(
        trial_id=d["trial_id"], status=_status(d["status"], where), tree=_tree(d["program"], f"{where} program"),
        digest=d["digest"], run_status=_status(d["run_status"], where), score=d["val_bpb"], kept=d["kept"],
        parent_tree=None if parent is None else _tree(parent, f"{where} parent_program"), parent=d.get("parent"),
        edits=tuple(d.get("edits", ())), description=d.get("description", ""), agent=d.get("agent", {}),
        replicate=d.get("replicate"), cached=d.get("cached", False), best_before=d.get("best_before"),
        sigma=d.get("sigma", 0.0), confirms=d.get("confirms"),
        confirmed_by=None if confirmed_by is None else tuple(confirmed_by), keep_margin=d.get("keep_margin"),
        mean_score=d.get("mean_val_bpb"), n_runs=d.get("n_runs"), env_digest=d.get("env_digest"),
        started_at=d["started_at"], finished_at=d["finished_at"],
        metrics=d)   # less the keys above (__post_init__)


_OWN_KEYS = frozenset(_RECORD_TYPES) | frozenset(_OPTIONAL_TYPES)   # ledger keys of TrialRecord's own fields
_PENDING_TYPES: dict[str, tuple[type, ...]] = {
    "trial_id": (str,), "baseline": (bool,), "program": (str,), "parent_program": (str, type(None)),
    "edits": (list,), "agent": (dict,), "description": (str,)}


@dataclasses.dataclass(frozen=True)
class Pending:
  """A trial proposed and not yet recorded: saved in state.json before it runs, so a resume reruns it."""
  trial_id: str
  baseline: bool                           # a run of the starting program for the noise estimate
  tree: tree_lib.Node
  parent_tree: tree_lib.Node | None = None
  edits: tuple[dict, ...] = ()
  agent: dict = dataclasses.field(default_factory=dict)
  description: str = ""
  first_run: TrialRecord | None = None     # a candidate's first run, saved while its confirmations run

  def to_dict(self) -> dict[str, Any]:
    out = {"trial_id": self.trial_id, "baseline": self.baseline, "program": tree_lib.to_json(self.tree),
           "parent_program": None if self.parent_tree is None else tree_lib.to_json(self.parent_tree),
           "edits": list(self.edits), "agent": self.agent, "description": self.description}
    if self.first_run is not None:
      out["first_run"] = self.first_run.to_dict()
    return out

  @classmethod
  def from_dict(cls, d: Any, where: str) -> "Pending":
    check_types(d, _PENDING_TYPES, where)
    parent = d["parent_program"]
    first = d.get("first_run")
    if isinstance(first, dict):   # written before the typed record: a run without the loop's decision
      first = {"status": first.get("run_status"), "kept": False, **first}
    return cls(trial_id=d["trial_id"], baseline=d["baseline"], tree=_tree(d["program"], f"{where} program"),
               parent_tree=None if parent is None else _tree(parent, f"{where} parent_program"),
               edits=tuple(d["edits"]), agent=d["agent"], description=d["description"],
               first_run=None if first is None else TrialRecord.from_dict(first, f"{where} first_run"))


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """What an evaluator may know of the kept best when it runs a trial (for early abort).

  reference_score is None when there is nothing to compare with (no best yet, or a confirmation run, which
  is never aborted); reference_curve is the best's training-loss curve as (progress, loss) pairs.
  """
  sigma: float = 0.0                                       # run-to-run noise of the score (arrl.keep)
  reference_score: float | None = None
  reference_curve: Sequence[Sequence[float]] = ()

  @classmethod
  def against(cls, score: Any, curve: Sequence[Sequence[float]] | None, sigma: float) -> "EvalContext":
    """The context of a trial judged against a best that scored `score` (no reference unless a finite number)
    with training-loss curve `curve`."""
    finite = isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
    return cls(sigma=sigma, reference_score=score if finite else None,
               reference_curve=tuple(tuple(p) for p in curve or ()))

  @classmethod
  def from_record(cls, record: TrialRecord | None, sigma: float) -> "EvalContext":
    """The context of a trial judged against `record` (None: no reference)."""
    if record is None:
      return cls(sigma=sigma)
    return cls.against(record.score, record.metrics.get("loss_curve"), sigma)
