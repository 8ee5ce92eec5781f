"""Noise-aware keep rule."""
from __future__ import annotations

import math

import numpy as np
import pytest

from arrl.keep import SIGMA_FLOOR, KeepRule, NoiseModel


def test_sigma_from_two_runs():
  nm = NoiseModel.from_samples([0.990, 0.994])
  assert nm.raw_sigma == pytest.approx(0.004 / math.sqrt(2)) and nm.sigma == nm.raw_sigma and nm.dof == 1


def test_coinciding_runs_hit_the_floor():
  nm = NoiseModel.from_samples([0.99, 0.99])
  assert nm.raw_sigma == 0.0 and nm.sigma == SIGMA_FLOOR
  assert NoiseModel.from_samples([0.99, 0.99], floor=0.002).sigma == 0.002


def test_single_run_gives_the_floor():
  nm = NoiseModel.from_samples([0.99])
  assert math.isnan(nm.raw_sigma) and nm.sigma == SIGMA_FLOOR and nm.dof == 0


def test_pooled_groups():
  # Two programs, two runs each, spreads 0.002 and 0.004: pooled variance = mean of the two variances.
  nm = NoiseModel.from_groups([[1.000, 1.002], [0.900, 0.904]])
  assert nm.raw_sigma == pytest.approx(math.sqrt((0.002 ** 2 / 2 + 0.004 ** 2 / 2) / 2)) and nm.dof == 2


@pytest.mark.parametrize("samples", [[0.99, float("nan")], [[0.99, 0.98]]])
def test_bad_samples_are_rejected(samples):
  with pytest.raises(ValueError):
    NoiseModel.from_samples(samples)


def test_sigma_interval_matches_chi_square_tables():
  # chi^2 quantiles (df 1: 0.000982, 5.0239; df 10: 3.2470, 20.4832) from printed tables, not from scipy.
  lo, hi = NoiseModel(sigma=1.0, raw_sigma=1.0, dof=1).interval()
  assert lo == pytest.approx(math.sqrt(1 / 5.0239), rel=1e-4) and hi == pytest.approx(math.sqrt(1 / 0.000982), rel=1e-3)
  lo, hi = NoiseModel(sigma=0.01, raw_sigma=0.01, dof=10).interval()
  assert lo == pytest.approx(0.01 * math.sqrt(10 / 20.4832), rel=1e-4)
  assert hi == pytest.approx(0.01 * math.sqrt(10 / 3.2470), rel=1e-4)
  assert all(math.isnan(x) for x in NoiseModel.from_samples([1.0]).interval())


def test_margin_is_the_one_sided_t_quantile():
  noise = NoiseModel(sigma=0.01, raw_sigma=0.01, dof=2)
  # t_{0.95, 2} = 2.919986 (tables); n_cand = 1 against a best with 3 runs.
  assert KeepRule(0.05).margin(noise, 1, 3) == pytest.approx(2.919986 * 0.01 * math.sqrt(1 + 1 / 3), rel=1e-5)
  assert KeepRule(0.05).margin(noise, 2, 2) == pytest.approx(2.919986 * 0.01, rel=1e-5)
  # df 0: the floored sigma is taken as known, z_{0.95} = 1.644854.
  floor = NoiseModel.from_samples([0.99])
  assert KeepRule(0.05).margin(floor, 1, 1) == pytest.approx(1.644854 * SIGMA_FLOOR * math.sqrt(2), rel=1e-5)
  assert KeepRule(0.5).margin(noise, 1, 1) == pytest.approx(0.0, abs=1e-12)   # alpha 0.5: any gain


@pytest.mark.parametrize("best,cand,keep", [
    ([1.0, 1.0], [0.97], True),            # gain 0.030 > 6.31 * 0.002 * sqrt(1.5) = 0.0155
    ([1.0, 1.0], [0.99], False),           # gain 0.010: within noise at df 1
    ([1.0, 1.0], [0.99, 0.99], False),     # two runs, gain 0.010 < 6.31 * 0.002 = 0.0126
    ([1.0, 1.0], [0.985, 0.985], True),    # gain 0.015 > 0.0126
    ([1.0], [1.01], False),                # worse
    (None, [1.2], True),                   # first result is kept
    ([1.0], [], False),                    # no score: never kept
    ([1.0], [float("nan")], False),
    ([1.0], [0.9, float("-inf")], False),
])
def test_keep(best, cand, keep):
  noise = NoiseModel(sigma=0.002, raw_sigma=0.002, dof=1)   # t_{0.95, 1} = 6.3138
  assert KeepRule(0.05).keep(best, cand, noise) is keep


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1])
def test_rule_rejects_bad_rates(rate):
  with pytest.raises(ValueError, match="false_keep"):
    KeepRule(rate)


def _aa_false_keeps(rule, rng, sims, n_best, confirm):
  """Fraction of A/A candidates (same mean) kept by the two-stage procedure, with sigma estimated as the loop does."""
  kept = 0
  for _ in range(sims):
    best = list(rng.normal(1.0, 0.01, n_best))
    cand = [float(rng.normal(1.0, 0.01))]
    ok = rule.keep(best, cand, NoiseModel.from_groups([best, cand]))
    if ok and confirm:
      cand += list(rng.normal(1.0, 0.01, confirm))
      ok = rule.keep(best, cand, NoiseModel.from_groups([best, cand]))
    kept += ok
  return kept / sims


def test_false_keep_rate_holds_in_simulated_aa_runs():
  rng = np.random.default_rng(0)
  rule = KeepRule(0.05)
  one_stage = _aa_false_keeps(rule, rng, 4000, 3, 0)
  assert 0.035 < one_stage < 0.065            # the test is exact under the model: about alpha, not far below
  assert _aa_false_keeps(rule, rng, 4000, 3, 1) <= 0.05
  # The old rule (keep iff gain > 2 sigma, sigma from 2 baselines) keeps P(t_1 > 2 / sqrt(1.5)) = 17.5% of them.
  old = 0
  for _ in range(4000):
    base = rng.normal(1.0, 0.01, 2)
    old += base.mean() - rng.normal(1.0, 0.01) > 2 * NoiseModel.from_samples(base).sigma
  assert 0.15 < old / 4000 < 0.20
