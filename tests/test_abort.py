"""Early abort: power-law fit, like-with-like comparison, watcher checkpoints."""
from __future__ import annotations

import numpy as np
import pytest

from arrl.abort import AbortPolicy, AbortReference, AbortWatcher, fit_power_law, smooth
from arrl.tree import Node
from arrl.trial import EvalContext, Status, TrialRecord

P = np.linspace(0.002, 1.0, 500)


def curve(a=2.0, b=0.5, c=3.0, noise=0.0, seed=0, warmdown=0.0) -> np.ndarray:
  """A synthetic training curve; `warmdown` bends it down over the last half like an LR warmdown."""
  loss = a * P ** -b + c - warmdown * np.clip((P - 0.5) / 0.5, 0, 1) ** 2
  loss = loss + np.random.default_rng(seed).normal(0.0, noise, P.shape)
  return np.stack([P, loss], axis=1)


def reference(**kw) -> AbortReference:
  return AbortReference(curve=curve(noise=0.03, seed=1, **kw), val_bpb=1.0, sigma_bpb=0.001)


@pytest.mark.parametrize("a,b,c", [(2.0, 0.5, 3.0), (0.5, 1.2, 2.5), (4.0, 0.15, 1.0)])
def test_fit_recovers_parameters(a, b, c):
  p = P[P <= 0.5]
  fit = fit_power_law(p, a * p ** -b + c)
  assert fit.a == pytest.approx(a, rel=0.01) and fit.b == pytest.approx(b, rel=0.01)
  assert fit.c == pytest.approx(c, abs=0.02) and fit.rms < 1e-2
  assert float(fit(1.0)) == pytest.approx(a + c, abs=0.01)


def test_fit_on_noisy_smoothed_curve_predicts_the_end():
  cur = curve(noise=0.05, seed=3)
  fit = fit_power_law(*smooth(cur, 0.3, 0.05, 24))
  assert float(fit(1.0)) == pytest.approx(5.0, abs=0.08)
  assert 0.01 < fit.rms < 0.05


def test_fit_of_a_flat_curve_has_no_decay():
  fit = fit_power_law(P[:50], np.full(50, 4.0))
  assert fit.a == pytest.approx(0.0, abs=1e-9) and fit.c == pytest.approx(4.0)


@pytest.mark.parametrize("p,y", [([0.1, 0.2, 0.3], [3, 2, 1]), ([0, 0.1, 0.2, 0.3], [4, 3, 2, 1]),
                                 ([0.1, 0.2, 0.3, 0.4], [4, 3, float("nan"), 1])])
def test_fit_rejects_bad_input(p, y):
  with pytest.raises(ValueError):
    fit_power_law(p, y)


def test_clearly_worse_run_is_aborted_with_a_prediction():
  policy = AbortPolicy()
  res = policy.assess(curve(c=3.3, noise=0.03, seed=2), reference(), 0.3)
  assert res["stop"] and res["fraction"] == 0.3
  assert res["predicted_loss"] - res["best_predicted_loss"] == pytest.approx(0.3, abs=0.05)
  assert res["margin"] < 0.3
  r = 1.0 / 5.0   # the reference's val_bpb per unit of final training loss
  assert res["predicted_val_bpb"] == pytest.approx(r * 5.3, abs=0.02)


@pytest.mark.parametrize("c", [3.0, 3.01, 2.7], ids=["same", "close", "better"])
def test_close_or_better_run_is_not_aborted(c):
  res = AbortPolicy().assess(curve(c=c, noise=0.03, seed=4), reference(), 0.3)
  assert res is not None and not res["stop"]


def test_flatter_but_currently_equal_run_is_not_aborted():
  # Predicted worse at the end but not worse now: not "confidently" worse.
  ref = reference()
  at = float(2.0 * 0.3 ** -0.5)
  cand = curve(a=at * 0.3 ** 0.2, b=0.2, c=3.0, noise=0.03, seed=5)
  res = AbortPolicy().assess(cand, ref, 0.3)
  assert res["predicted_loss"] > res["best_predicted_loss"] + res["margin"]
  assert not res["stop"]


def test_like_with_like_cancels_the_warmdown_bend():
  # Both curves bend at 0.5; an honest copy of the best must survive the 0.7 checkpoint and a worse run not.
  ref = reference(warmdown=0.4)
  policy = AbortPolicy()
  same = policy.assess(curve(noise=0.03, seed=6, warmdown=0.4), ref, 0.7)
  worse = policy.assess(curve(c=3.3, noise=0.03, seed=7, warmdown=0.4), ref, 0.7)
  assert not same["stop"] and abs(same["predicted_loss"] - same["best_predicted_loss"]) < same["margin"]
  assert worse["stop"]


def test_noise_widens_the_margin():
  policy = AbortPolicy()
  cand = curve(c=3.05, noise=0.03, seed=8)
  quiet = policy.assess(cand, AbortReference(curve(noise=0.03, seed=1), val_bpb=1.0, sigma_bpb=0.001), 0.3)
  noisy = policy.assess(cand, AbortReference(curve(noise=0.03, seed=1), val_bpb=1.0, sigma_bpb=0.05), 0.3)
  assert noisy["margin"] > quiet["margin"] and not noisy["stop"]


def test_too_little_data_gives_no_decision():
  short = curve()[:30]   # progress < 0.06
  assert AbortPolicy().assess(short, reference(), 0.3) is None


def test_watcher_assesses_only_at_checkpoints_and_stops():
  watcher = AbortWatcher(AbortPolicy(fractions=(0.3, 0.5)), reference())
  worse = curve(c=3.5, noise=0.03, seed=9)
  stops = []
  for p, loss in worse:
    stops.append(watcher.observe({"progress": p, "loss": loss}))
    if p < 0.3:
      assert watcher.record is None
    if stops[-1]:
      break
  assert stops[-1] and sum(stops) == 1
  assert watcher.record["fraction"] == pytest.approx(0.3, abs=0.003)


def test_watcher_without_reference_or_disabled_never_stops():
  worse = curve(c=5.0)
  for watcher in (AbortWatcher(AbortPolicy(), None), AbortWatcher(AbortPolicy(enabled=False), reference())):
    assert not any(watcher.observe({"progress": p, "loss": y}) for p, y in worse)
    assert watcher.record is None and len(watcher.curve) == len(worse)


def best(score, loss_curve=()):
  return TrialRecord(trial_id="000003", status=Status.KEEP, tree=Node("params", "flat"), digest="d",
                     run_status=Status.OK, score=score, kept=True, metrics={"loss_curve": list(loss_curve)})


def test_reference_from_a_best_record():
  good = best(0.99, curve().tolist())
  ref = AbortReference.from_context(EvalContext.from_record(good, sigma=0.001))
  assert ref.val_bpb == 0.99 and ref.sigma_bpb == 0.001 and ref.final_loss == pytest.approx(5.0, abs=0.05)
  for record in (None, best(None, curve().tolist()), best(float("nan")), best(0.99)):
    assert AbortReference.from_context(EvalContext.from_record(record, 0.001)) is None


@pytest.mark.parametrize("kw", [{"fractions": ()}, {"fractions": (0.5, 0.3)}, {"fractions": (1.0,)},
                                {"skip": 0.0}, {"skip": 0.4}, {"k": -1.0}, {"min_bins": 3}])
def test_policy_rejects_bad_settings(kw):
  with pytest.raises(ValueError):
    AbortPolicy(**kw)
