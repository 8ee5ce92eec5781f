"""Termination oracle and graceful stop signals."""
from __future__ import annotations

import dataclasses
import os
import signal

import pytest

from arrl.oracle import STOP_FILE, Oracle, StopSignals


@dataclasses.dataclass
class Out:
  kept: bool = False
  score: float | None = 1.0
  best_before: float | None = 1.0


def plateau(n: int) -> list[Out]:
  return [Out(kept=True, score=1.0, best_before=None)] + [Out() for _ in range(n)]


def test_nothing_to_report():
  assert Oracle().check(executed=0, elapsed_s=0.0) is None


def test_max_experiments_and_hours():
  o = Oracle(max_experiments=10, max_hours=2.0)
  assert o.check(executed=9, elapsed_s=0.0) is None
  assert o.check(executed=10, elapsed_s=0.0) == "max-experiments"
  assert o.check(executed=1, elapsed_s=2 * 3600.0) == "max-hours"
  assert o.budget_used(5, 0.0) == 0.5 and o.budget_used(1, 1.5 * 3600) == 0.75 and o.budget_used(20, 0.0) == 1.0
  assert Oracle().budget_used(100, 1e6) == 0.0


def test_stop_file(tmp_path):
  o = Oracle(run_dir=str(tmp_path))
  assert o.check(executed=0, elapsed_s=0.0) is None
  (tmp_path / STOP_FILE).touch()
  assert o.check(executed=0, elapsed_s=0.0) == "stop-file"


def test_convergence_needs_a_plateau_of_patience_trials():
  o = Oracle(patience=5)
  assert o.check(1, 0.0, history=plateau(4), sigma=0.001) is None
  assert o.check(1, 0.0, history=plateau(5), sigma=0.001) == "converged"


def test_a_real_improvement_resets_the_plateau():
  o = Oracle(patience=5)
  history = plateau(5) + [Out(kept=True, score=0.990, best_before=1.0)] + [Out()] * 4
  assert o.check(1, 0.0, history=history, sigma=0.001) is None
  assert o.check(1, 0.0, history=history + [Out()], sigma=0.001) == "converged"


def test_improvement_within_noise_does_not_reset_the_plateau():
  o = Oracle(patience=5)
  history = plateau(4) + [Out(kept=True, score=0.999, best_before=1.0)]   # gain 0.001 < 2 * 0.001
  assert o.check(1, 0.0, history=history, sigma=0.001) == "converged"


def test_high_entropy_policy_is_still_exploring():
  o = Oracle(patience=5, entropy_threshold=0.5)
  assert o.check(1, 0.0, history=plateau(10), sigma=0.001, entropy=1.2) is None
  assert o.check(1, 0.0, history=plateau(10), sigma=0.001, entropy=0.3) == "converged"
  assert Oracle(patience=None).check(1, 0.0, history=plateau(1000)) is None


def test_resource_reasons_come_before_convergence(tmp_path):
  (tmp_path / STOP_FILE).touch()
  o = Oracle(max_experiments=1, patience=1, run_dir=str(tmp_path))
  assert o.check(5, 0.0, history=plateau(5)) == "stop-file"


@pytest.mark.parametrize("kw", [{"max_experiments": 0}, {"max_hours": 0.0}, {"patience": 0}])
def test_bad_settings(kw):
  with pytest.raises(ValueError):
    Oracle(**kw)


def test_signals_first_stops_second_abandons_third_interrupts():
  previous = signal.getsignal(signal.SIGTERM)
  with StopSignals() as sig:
    o = Oracle(signals=sig)
    assert o.check(0, 0.0) is None and not sig.stop_requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert sig.stop_requested and not sig.abandon_requested
    assert o.check(0, 0.0) == "signal"
    os.kill(os.getpid(), signal.SIGINT)
    assert sig.abandon_requested
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGTERM)
  assert signal.getsignal(signal.SIGTERM) is previous
