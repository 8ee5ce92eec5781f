"""Progress of a search run: one line per finished trial plus a live status line on a terminal."""
from __future__ import annotations

import time

from rich.console import Console


class RunDisplay:
  def __init__(self, max_experiments: int | None, max_hours: float | None, console: Console | None = None):
    self.console = console or Console(stderr=True, highlight=False)
    self.max_experiments, self.max_hours = max_experiments, max_hours
    self.t0 = time.time()

  def eta(self, executed: int, elapsed_s: float) -> str:
    """Time until the first resource limit, at the observed trial rate."""
    left = []
    if self.max_hours is not None:
      left.append(self.max_hours * 3600 - elapsed_s)
    if self.max_experiments is not None and executed:
      left.append((self.max_experiments - executed) * elapsed_s / executed)
    if not left:
      return "until stopped"
    s = max(0.0, min(left))
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"

  def trial(self, loop, rec: dict) -> None:
    """Called by the loop after every trial."""
    rate = loop.executed / max(loop.elapsed_s, 1e-9) * 3600
    score = f"{rec['val_bpb']:.6f}" if rec.get("val_bpb") is not None else "-"
    best = f"{loop.best_score:.6f}" if loop.best_score is not None else "-"
    colour = {"keep": "green", "baseline": "cyan", "discard": "white"}.get(rec["status"], "red")
    cached = " (cached)" if rec.get("cached") else ""
    self.console.print(
        f"trial {rec['trial_id']} [{colour}]{rec['status']:>15}[/{colour}]{cached} val_bpb {score} | best {best} "
        f"| sigma {loop.sigma:.4f} | {rate:.1f} trials/h | ETA {self.eta(loop.executed, loop.elapsed_s)} "
        f"| {rec.get('description', '')}", soft_wrap=True)
