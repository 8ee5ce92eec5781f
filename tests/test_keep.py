"""Noise-aware keep rule."""
from __future__ import annotations

import math

import pytest

from arrl.keep import SIGMA_FLOOR, NoiseModel, should_keep


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


@pytest.mark.parametrize("best,cand,sigma,k,keep", [
    (1.000, 0.990, 0.002, 2.0, True),     # gain 0.010 > 0.004
    (1.000, 0.997, 0.002, 2.0, False),    # gain 0.003 < 0.004: within noise
    (1.0, 0.75, 0.125, 2.0, False),       # exactly k*sigma (exact in binary) is not "more than"
    (1.000, 1.010, 0.002, 2.0, False),    # worse
    (1.000, 0.999, 0.0, 2.0, True),       # no noise: any gain
    (1.000, 0.997, 0.002, 1.0, True),     # smaller k
    (None, 1.2, 0.002, 2.0, True),        # first result is kept
    (None, None, 0.002, 2.0, False),      # no score: never kept
    (1.000, float("nan"), 0.002, 2.0, False),
    (1.000, float("-inf"), 0.002, 2.0, False),
])
def test_should_keep(best, cand, sigma, k, keep):
  assert should_keep(best, cand, sigma, k) is keep


def test_should_keep_rejects_negative_noise():
  with pytest.raises(ValueError, match="sigma"):
    should_keep(1.0, 0.9, -0.1)
