"""Noise-aware keep/discard: a one-sided test with a stated false-keep rate.

Two runs of the same program differ (another data-order seed and initialisation, GPU reductions, and on a
wall-clock budget a loaded machine fitting fewer steps into it: why the cpu preset counts FLOPs,
`nanochat_jax.env.step_cost_s`), so "lower val_bpb wins" keeps noise.

Model. A run of program p scores y = mu_p + e, e ~ N(0, sigma^2), one sigma for all programs.
sigma is estimated by pooling the within-program spread of every program measured more than once
(baselines, confirmation runs, re-measurements):

    s^2 = sum_p sum_i (y_pi - mean_p)^2 / df,    df = sum_p (n_p - 1)

and df * s^2 / sigma^2 ~ chi^2_df, which gives its interval (`NoiseModel.interval`):
sigma in [s sqrt(df / chi^2_{1-a/2, df}), s sqrt(df / chi^2_{a/2, df})].

Rule. The kept best has n_b runs with mean B, the candidate n_c runs with mean C (lower is better).
H0: mu_cand >= mu_best (the candidate is no better). Under H0's boundary mu_cand = mu_best,

    t = (B - C) / (s sqrt(1/n_c + 1/n_b))   ~   Student t with df degrees of freedom

(the sample variance of normal data is independent of the sample means, so s may pool the best's and
the candidate's own runs). Keep iff t > t_{1-alpha, df}, i.e. iff

    B - C > t_{1-alpha, df} * s * sqrt(1/n_c + 1/n_b),

which keeps a candidate that is no better with probability <= alpha (`false_keep`, default 0.05).
With df = 0 (a single baseline: nothing to estimate from) s is the floor, taken as the known sigma,
and the normal quantile z_{1-alpha} replaces t.

Confirmation (arrl.loop). A candidate that passes with its first run (n_c = 1) is re-run R more times
on other data-order seeds and kept only if the test passes again on all 1 + R runs (with s re-pooled).
Kept = "passed both", so P(false keep) <= P(final test passes | H0) <= alpha: the screen only saves
the cost of confirming hopeless candidates, it cannot raise the rate.

The rate is per candidate that is no better. It rests on the model: runs whose spread changes with
machine load break the one-sigma assumption (benchmarks/aa_check.py measures the real rate).

s has a floor (`SIGMA_FLOOR` = 0.0005 bpb, the last digit autoresearch's logs report): with few runs
the estimate can be ~0 by chance, which would let the next lucky run through.
scipy.special (scipy is a dependency of jax) supplies the t, normal and chi-square quantiles; it is imported
when first needed, so `import arrl.search` stays fast (scipy.stats alone takes seconds to import).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

SIGMA_FLOOR = 0.0005
DEFAULT_FALSE_KEEP = 0.05


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

  def interval(self, level: float = 0.95) -> tuple[float, float]:
    """Chi-square confidence interval of the true sigma around raw_sigma ((nan, nan) when dof is 0)."""
    if not 0 < level < 1:
      raise ValueError(f"level must be in (0, 1), got {level}")
    if self.dof == 0:
      return math.nan, math.nan
    from scipy.special import chdtri  # chdtri(df, p): the chi-square quantile with upper tail p
    tail = (1 - level) / 2
    ss = self.dof * self.raw_sigma ** 2
    return math.sqrt(ss / chdtri(self.dof, tail)), math.sqrt(ss / chdtri(self.dof, 1 - tail))

  def describe(self) -> str:
    lo, hi = self.interval()
    return f"{self.sigma:.6f} (raw {self.raw_sigma:.6f}, df {self.dof}, 95% CI [{lo:.6f}, {hi:.6f}])"


@dataclasses.dataclass(frozen=True)
class KeepRule:
  """Keep iff mean(best) - mean(candidate) > q * sigma * sqrt(1/n_cand + 1/n_best), q = t_{1-alpha, df}."""
  false_keep: float = DEFAULT_FALSE_KEEP   # alpha: the chance of keeping a candidate that is no better

  def __post_init__(self) -> None:
    if not 0 < self.false_keep < 1:
      raise ValueError(f"false_keep must be in (0, 1), got {self.false_keep}")

  def quantile(self, dof: int) -> float:
    """t_{1-alpha, dof}; z_{1-alpha} when dof is 0."""
    from scipy.special import ndtri, stdtrit
    return float(ndtri(1 - self.false_keep) if dof == 0 else stdtrit(dof, 1 - self.false_keep))

  def margin(self, noise: NoiseModel, n_cand: int, n_best: int) -> float:
    """The smallest mean gain that is kept."""
    if n_cand < 1 or n_best < 1:
      raise ValueError(f"need >= 1 run of each program, got n_cand={n_cand}, n_best={n_best}")
    return self.quantile(noise.dof) * noise.sigma * math.sqrt(1 / n_cand + 1 / n_best)

  def keep(self, best_runs: Sequence[float] | None, cand_runs: Sequence[float], noise: NoiseModel) -> bool:
    """True iff the candidate's runs (all finite) beat the best's by more than the margin.

    With no best yet (`best_runs` None or empty) a candidate with finite runs is kept.
    """
    if not cand_runs or not all(c is not None and math.isfinite(c) for c in cand_runs):
      return False
    if not best_runs:
      return True
    gain = float(np.mean(best_runs)) - float(np.mean(cand_runs))
    return gain > self.margin(noise, len(cand_runs), len(best_runs))

  def describe(self) -> str:
    return (f"keep iff mean(best) - mean(candidate) > t(1-{self.false_keep:g}, df) * sigma * "
            f"sqrt(1/n_cand + 1/n_best); false-keep rate <= {self.false_keep:.0%} per candidate that is no better")
