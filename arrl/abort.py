"""Early abort: stop a trial whose training loss is confidently heading somewhere worse than the best's.

At fixed fractions of the budget (default 0.3, 0.5, 0.7) the candidate's training-loss curve, as
(progress, loss) pairs with progress = fraction of the time budget, is smoothed (median per bin over
[skip, fraction], default skip = 0.05 to drop the initial plunge) and fitted with L(p) = a p^-b + c
(numpy only: a grid over b, closed-form least squares for a, c at each b, then a finer grid).

Compare like with like: the LR warmdown bends real curves, so a power law fitted to 30 % of a run does not
predict its end well. The *kept best's* stored curve is therefore truncated at the same fraction and fitted
the same way; both fits are extrapolated to p = 1 and biased the same way by the missing warmdown. Stop iff

    candidate_pred - best_pred > margin   and   candidate_now - best_now > margin

(`*_now` = each fit at the current fraction: the run must be worse already, not only predicted to be), with

    margin = k * sqrt(sigma_loss^2 + rms_candidate^2 + rms_best^2),   k = 3 by default,

sigma_loss = the run-to-run noise of val_bpb (the loop's pooled sigma, the one its keep test uses;
`arrl.keep`) in loss units, via the best's val_bpb / final-training-loss ratio r, and rms_* = the fit
residuals of the binned curves (how far the smoothed points stray from the power law: a poor fit widens
the margin).

The prediction record (kept in the trial's `abort` field, whether or not it stopped the run) holds the
fraction, both predictions, the margin and predicted_val_bpb = r * (best_final_loss + candidate_pred -
best_pred): the best's actual end shifted by the predicted gap, which cancels the shared fit bias.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from arrl.trial import EvalContext


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
  a: float
  b: float
  c: float
  rms: float    # residual standard deviation (3 parameters fitted)
  n: int        # points fitted

  def __call__(self, p: Any) -> Any:
    return self.a * np.power(p, -self.b) + self.c

  def to_dict(self) -> dict[str, float]:
    return {"a": self.a, "b": self.b, "c": self.c, "rms": self.rms, "n": self.n}


def _fit_grid(p_N: np.ndarray, y_N: np.ndarray, b_G: np.ndarray) -> tuple[np.ndarray, ...]:
  """Least-squares a >= 0, c for each b; returns (a_G, c_G, sse_G)."""
  x_GxN = np.power(p_N[None, :], -b_G[:, None])
  xc_GxN = x_GxN - x_GxN.mean(axis=1, keepdims=True)
  yc_N = y_N - y_N.mean()
  sxx_G = np.sum(xc_GxN ** 2, axis=1)
  sxy_G = xc_GxN @ yc_N
  a_G = np.maximum(sxy_G / np.maximum(sxx_G, 1e-300), 0.0)   # a loss curve does not rise with time
  c_G = y_N.mean() - a_G * x_GxN.mean(axis=1)
  sse_G = np.sum((a_G[:, None] * x_GxN + c_G[:, None] - y_N[None, :]) ** 2, axis=1)
  return a_G, c_G, sse_G


def fit_power_law(p: Sequence[float], loss: Sequence[float], b_max: float = 3.0) -> PowerLawFit:
  """Fit loss = a p^-b + c with a >= 0, 0 < b <= b_max. Needs >= 4 points with p > 0."""
  p_N = np.asarray(p, dtype=np.float64)
  y_N = np.asarray(loss, dtype=np.float64)
  if p_N.shape != y_N.shape or p_N.ndim != 1 or len(p_N) < 4:
    raise ValueError(f"need two equal-length 1-D sequences of >= 4 points, got shapes {p_N.shape}, {y_N.shape}")
  if np.any(p_N <= 0) or not np.all(np.isfinite(p_N)) or not np.all(np.isfinite(y_N)):
    raise ValueError("progress values must be finite and > 0, losses finite")
  coarse_G = np.linspace(0.01, b_max, 150)
  _, _, sse_G = _fit_grid(p_N, y_N, coarse_G)
  i = int(np.argmin(sse_G))
  step = coarse_G[1] - coarse_G[0]
  fine_G = np.linspace(max(coarse_G[i] - step, 1e-3), coarse_G[i] + step, 81)
  a_G, c_G, sse_G = _fit_grid(p_N, y_N, fine_G)
  j = int(np.argmin(sse_G))
  rms = math.sqrt(float(sse_G[j]) / max(len(p_N) - 3, 1))
  return PowerLawFit(a=float(a_G[j]), b=float(fine_G[j]), c=float(c_G[j]), rms=rms, n=len(p_N))


def as_curve(curve: Sequence[Sequence[float]]) -> np.ndarray:
  """(progress, loss) pairs -> float array of shape (N, 2), non-finite points dropped."""
  arr = np.asarray(curve, dtype=np.float64).reshape(-1, 2) if len(curve) else np.zeros((0, 2))
  return arr[np.all(np.isfinite(arr), axis=1)]


def smooth(curve_Nx2: np.ndarray, upto: float, skip: float, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
  """Median (progress, loss) per non-empty bin of [skip, upto]."""
  p_N, y_N = curve_Nx2[:, 0], curve_Nx2[:, 1]
  inside = (p_N >= skip) & (p_N <= upto)
  p_N, y_N = p_N[inside], y_N[inside]
  bin_N = np.minimum(((p_N - skip) / max(upto - skip, 1e-12) * n_bins).astype(int), n_bins - 1)
  bins = [b for b in range(n_bins) if np.any(bin_N == b)]
  p_B = np.array([np.median(p_N[bin_N == b]) for b in bins])
  y_B = np.array([np.median(y_N[bin_N == b]) for b in bins])
  return p_B, y_B


def final_loss(curve_Nx2: np.ndarray, tail: float = 0.05) -> float:
  """Median training loss over the last `tail` of a finished run's progress."""
  p_N = curve_Nx2[:, 0]
  return float(np.median(curve_Nx2[p_N >= p_N.max() - tail, 1]))


@dataclasses.dataclass(frozen=True)
class AbortReference:
  """The kept best a candidate is compared with."""
  curve: np.ndarray     # (N, 2) progress, training loss of its full run
  val_bpb: float
  sigma_bpb: float      # run-to-run noise of val_bpb (arrl.keep.NoiseModel.sigma)

  def __post_init__(self) -> None:
    if not (math.isfinite(self.val_bpb) and self.val_bpb > 0):
      raise ValueError(f"reference val_bpb must be finite and > 0, got {self.val_bpb}")
    if not self.sigma_bpb >= 0:
      raise ValueError(f"sigma_bpb must be >= 0, got {self.sigma_bpb}")

  @classmethod
  def from_context(cls, context: EvalContext) -> "AbortReference | None":
    """The context's reference; None when it has no usable score or loss curve."""
    score = context.reference_score
    if score is None or not math.isfinite(score):
      return None
    curve = as_curve(context.reference_curve)
    if len(curve) < 4 or score <= 0:
      return None
    return cls(curve=curve, val_bpb=float(score), sigma_bpb=context.sigma)

  @property
  def final_loss(self) -> float:
    return final_loss(self.curve)

  @property
  def bpb_per_loss(self) -> float:
    return self.val_bpb / self.final_loss


@dataclasses.dataclass(frozen=True)
class AbortPolicy:
  enabled: bool = True
  fractions: tuple[float, ...] = (0.3, 0.5, 0.7)   # of the budget, where runs are assessed
  k: float = 3.0          # margin in standard deviations: "confidently" worse
  skip: float = 0.05      # progress before this is ignored (initial plunge, compile jitter)
  n_bins: int = 24        # smoothing bins over [skip, fraction]
  min_bins: int = 6       # fewer non-empty bins: no decision

  def __post_init__(self) -> None:
    if not self.fractions or any(not 0 < f < 1 for f in self.fractions) or list(self.fractions) != sorted(
        self.fractions):
      raise ValueError(f"fractions must be increasing values in (0, 1), got {self.fractions}")
    if not 0 < self.skip < self.fractions[0]:
      raise ValueError(f"skip must be in (0, first fraction), got {self.skip}")
    if self.k < 0 or self.min_bins < 4 or self.n_bins < self.min_bins:
      raise ValueError("need k >= 0 and 4 <= min_bins <= n_bins")

  def assess(self, curve: Sequence[Sequence[float]], reference: AbortReference,
             fraction: float) -> dict[str, Any] | None:
    """Prediction record at `fraction` (with "stop": bool), or None if either curve is too short to fit."""
    cand_B = smooth(as_curve(curve), fraction, self.skip, self.n_bins)
    ref_B = smooth(reference.curve, fraction, self.skip, self.n_bins)
    if min(len(cand_B[0]), len(ref_B[0])) < self.min_bins:
      return None
    cand, ref = fit_power_law(*cand_B), fit_power_law(*ref_B)
    pred_c, pred_b = float(cand(1.0)), float(ref(1.0))
    now_c, now_b = float(cand(fraction)), float(ref(fraction))
    r = reference.bpb_per_loss
    sigma_loss = reference.sigma_bpb / r
    margin = self.k * math.sqrt(sigma_loss ** 2 + cand.rms ** 2 + ref.rms ** 2)
    return {
        "fraction": fraction, "stop": pred_c - pred_b > margin and now_c - now_b > margin,
        "predicted_loss": pred_c, "best_predicted_loss": pred_b, "loss_now": now_c, "best_loss_now": now_b,
        "margin": margin, "predicted_val_bpb": r * (reference.final_loss + pred_c - pred_b),
        "best_val_bpb": reference.val_bpb, "fit": cand.to_dict(), "best_fit": ref.to_dict(),
    }


class AbortWatcher:
  """Per-trial state: feed it progress events; it says when to stop (the runner's `monitor`)."""

  def __init__(self, policy: AbortPolicy, reference: AbortReference | None):
    self.policy, self.reference = policy, reference
    self.curve: list[tuple[float, float]] = []
    self.record: dict[str, Any] | None = None   # the latest assessment (the stopping one if it stopped)
    self._next = 0                              # index of the next fraction to assess at

  def observe(self, event: dict[str, Any]) -> bool:
    """True iff the trial should be stopped now. `event` needs "progress" and "loss"."""
    p, loss = float(event["progress"]), float(event["loss"])
    self.curve.append((p, loss))
    fractions = self.policy.fractions
    if not self.policy.enabled or self.reference is None or self._next >= len(fractions):
      return False
    if p < fractions[self._next]:
      return False
    while self._next < len(fractions) and p >= fractions[self._next]:
      self._next += 1
    assessed = self.policy.assess(self.curve, self.reference, p)
    if assessed is not None:
      self.record = assessed
    return bool(assessed and assessed["stop"])
