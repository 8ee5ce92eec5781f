"""Means with 95 % t-intervals over seeds (no scipy: the few quantiles needed are tabulated)."""
from __future__ import annotations

import math

import numpy as np

# Student t 0.975 quantiles for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(dof: int) -> float:
  if dof < 1:
    raise ValueError(f"a t-interval needs at least 2 samples (dof >= 1), got dof={dof}")
  return _T975[dof - 1] if dof <= len(_T975) else 1.96 + 2.4 / dof  # within 0.002 of the exact value above 30


def mean_ci(x_SxN: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean over seeds (axis 0) and its 95 % interval; a single seed gives a zero-width interval."""
  x_SxN = np.asarray(x_SxN, dtype=np.float64)
  if x_SxN.ndim != 2 or x_SxN.shape[0] < 1:
    raise ValueError(f"expected a (seeds, points) array with at least one seed, got shape {x_SxN.shape}")
  mean_N = x_SxN.mean(axis=0)
  n = x_SxN.shape[0]
  if n == 1:
    return mean_N, mean_N.copy(), mean_N.copy()
  half_N = t975(n - 1) * x_SxN.std(axis=0, ddof=1) / math.sqrt(n)
  return mean_N, mean_N - half_N, mean_N + half_N
