"""The vocabulary of a trial shared by runner, loop, ledger, agents and display: its statuses, and what the
loop tells an evaluator about the trial to beat.

`Status` is a `StrEnum`: a member equals, hashes, formats and serialises as its string, so ledgers written
before it existed read the same and JSON on disk is unchanged.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from typing import Sequence


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
  def from_record(cls, record: dict | None, sigma: float) -> "EvalContext":
    """The context of a trial judged against the ledger record `record` (None: no reference)."""
    if record is None:
      return cls(sigma=sigma)
    score = record.get("val_bpb")
    return cls(sigma=sigma, reference_score=score if isinstance(score, (int, float)) and math.isfinite(score) else None,
               reference_curve=tuple(tuple(p) for p in record.get("loss_curve") or ()))
