"""When to stop searching: resources spent, a human asked, or the search has converged.

`Oracle.check` returns a short reason string, or None to go on. Reasons, in the order checked:
  "signal"           a SIGINT/SIGTERM arrived (see `StopSignals`);
  "stop-file"        a file named STOP exists in the run directory (`touch runs/x/STOP`);
  "max-experiments"  `max_experiments` trials have run (default None: unlimited);
  "max-hours"        `max_hours` of trial wall-clock time have been spent (default None: unlimited);
  "converged"        the last `patience` trials (default 50) brought no kept improvement beyond the noise
                     floor (best_before - score > noise_k * sigma, noise_k = 2) AND, when
                     the agent reports a policy entropy, it is below `entropy_threshold` (default 0.5 nats
                     per decision): a plateau with a still-exploring policy is not convergence.

`StopSignals` makes SIGINT/SIGTERM graceful: the first asks to stop after the trial in flight, the second
asks to abandon that trial (the executor kills its worker when `abandon_requested` turns true and the
loop exits without recording it), a third raises KeyboardInterrupt as a last resort.
"""
from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any, Sequence

STOP_FILE = "STOP"


class StopSignals:
  """Counts SIGINT/SIGTERM while installed (a context manager; main thread only)."""

  def __init__(self, signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)):
    self.signums = tuple(signums)
    self.count = 0
    self._previous: dict[int, Any] = {}

  def _handle(self, signum: int, frame: Any) -> None:
    del signum, frame
    self.count += 1
    if self.count >= 3:
      raise KeyboardInterrupt("third stop signal: giving up on a graceful stop")

  @property
  def stop_requested(self) -> bool:
    return self.count >= 1

  @property
  def abandon_requested(self) -> bool:
    return self.count >= 2

  def install(self) -> "StopSignals":
    for s in self.signums:
      self._previous[s] = signal.signal(s, self._handle)
    return self

  def restore(self) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()

  def __enter__(self) -> "StopSignals":
    return self.install()

  def __exit__(self, *exc: Any) -> None:
    self.restore()


@dataclasses.dataclass
class Oracle:
  max_experiments: int | None = None
  max_hours: float | None = None
  patience: int | None = 50          # None disables the convergence test
  entropy_threshold: float = 0.5
  noise_k: float = 2.0
  run_dir: str | None = None         # where a STOP file is looked for
  signals: StopSignals | None = None

  def __post_init__(self) -> None:
    if self.max_experiments is not None and self.max_experiments < 1:
      raise ValueError(f"max_experiments must be >= 1 or None, got {self.max_experiments}")
    if self.max_hours is not None and self.max_hours <= 0:
      raise ValueError(f"max_hours must be > 0 or None, got {self.max_hours}")
    if self.patience is not None and self.patience < 1:
      raise ValueError(f"patience must be >= 1 or None, got {self.patience}")

  def budget_used(self, executed: int, elapsed_s: float) -> float:
    """The larger share of the experiment and time budgets spent, in [0, 1] (0 with no budget)."""
    shares = [0.0]
    if self.max_experiments is not None:
      shares.append(executed / self.max_experiments)
    if self.max_hours is not None:
      shares.append(elapsed_s / (3600 * self.max_hours))
    return min(1.0, max(shares))

  def converged(self, history: Sequence[Any], sigma: float, entropy: float | None) -> bool:
    if self.patience is None or len(history) < self.patience:
      return False
    for item in history[-self.patience:]:
      before, score = item.best_before, item.score
      if item.kept and (before is None or before - score > self.noise_k * sigma):
        return False
    return entropy is None or entropy < self.entropy_threshold

  def check(self, executed: int, elapsed_s: float, history: Sequence[Any] = (), sigma: float = 0.0,
            entropy: float | None = None) -> str | None:
    """The reason to stop now, or None.

    history: finished trials, oldest first (objects with .kept, .score, .best_before, such as
    `arrl.agents.base.Outcome`); entropy: the agent's current policy entropy, if it has one.
    """
    if self.signals is not None and self.signals.stop_requested:
      return "signal"
    if self.run_dir is not None and os.path.exists(os.path.join(self.run_dir, STOP_FILE)):
      return "stop-file"
    if self.max_experiments is not None and executed >= self.max_experiments:
      return "max-experiments"
    if self.max_hours is not None and elapsed_s >= 3600 * self.max_hours:
      return "max-hours"
    if self.converged(history, sigma, entropy):
      return "converged"
    return None
