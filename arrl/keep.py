"""Noise-aware keep/discard: a candidate is kept only if it beats the best by more than k * sigma.

Two runs of the same program differ (data order is fixed, but GPU reductions, compile choices and the
wall-clock budget are not), so a raw "lower val_bpb wins" rule keeps noise. The loop runs the baseline R
times (default 2), estimates the run-to-run spread sigma from those runs, and keeps a candidate only when
`best - candidate > k * sigma` (default k = 2).

sigma has a floor (`SIGMA_FLOOR` = 0.0005 bpb, so the smallest keepable gain at k=2 is 0.001 bpb, the
last digit autoresearch's logs usually report): with 2 samples the estimate can be ~0 by chance, which
would let the next lucky run through.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

SIGMA_FLOOR = 0.0005
DEFAULT_K = 2.0


@dataclasses.dataclass(frozen=True)
class NoiseModel:
  sigma: float        # run-to-run standard deviation of val_bpb, floored
  raw_sigma: float    # the estimate before the floor (nan when there was nothing to estimate from)
  dof: int            # degrees of freedom behind raw_sigma

  @classmethod
  def from_samples(cls, samples: Sequence[float], floor: float = SIGMA_FLOOR) -> "NoiseModel":
    """sigma from repeated runs of one program (sample std, ddof=1)."""
    return cls.from_groups([samples], floor)

  @classmethod
  def from_groups(cls, groups: Sequence[Sequence[float]], floor: float = SIGMA_FLOOR) -> "NoiseModel":
    """Pooled sigma from repeated runs of several programs (each group = runs of one program)."""
    if floor < 0:
      raise ValueError(f"floor must be >= 0, got {floor}")
    arrays = [np.asarray(g, dtype=np.float64) for g in groups]
    if any(a.ndim != 1 for a in arrays):
      raise ValueError("each group of samples must be a flat sequence of floats")
    if any(not np.all(np.isfinite(a)) for a in arrays):
      raise ValueError("noise samples must be finite val_bpb values (leave failed runs out)")
    dof = sum(max(len(a) - 1, 0) for a in arrays)
    ss = sum(float(np.sum((a - a.mean()) ** 2)) for a in arrays if len(a) > 1)
    raw = math.sqrt(ss / dof) if dof else math.nan
    return cls(sigma=floor if math.isnan(raw) else max(raw, floor), raw_sigma=raw, dof=dof)


def should_keep(best: float | None, candidate: float | None, sigma: float, k: float = DEFAULT_K) -> bool:
  """Keep iff the candidate has a finite score and beats `best` (lower is better) by more than k*sigma.

  With no best yet (`best is None`) any finite candidate is kept.
  """
  if sigma < 0 or k < 0:
    raise ValueError(f"sigma and k must be >= 0, got sigma={sigma}, k={k}")
  if candidate is None or not math.isfinite(candidate):
    return False
  if best is None:
    return True
  return best - candidate > k * sigma
