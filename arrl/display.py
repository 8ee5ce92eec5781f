"""Progress of a search run: one line per finished trial, plus the trials in flight.

On a terminal a rich Live panel (redrawn twice a second by rich's own thread in the loop process) shows each
trial in flight (several with parallel workers): its id and edit, step, training loss, tokens/s, MFU, the budget left and the early-abort
prediction, with the run's best, sigma, trials/hour and ETA. Anywhere else (a log file, a pipe) a plain line
every 10% of a trial's budget replaces the panel. Progress events reach the display through `monitor`, which
wraps the trial's early-abort watcher in the runner: the watcher decides first and the display only stores
the event, so it neither slows nor changes a trial. The first display error is reported once as a warning and
switches the live part off; no display error reaches the loop.
"""
from __future__ import annotations

import threading
import time
import warnings
from typing import Any, Callable

from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from arrl.loop import error_line
from arrl.runner import Monitor
from arrl.trial import Status, TrialRecord

PERIODIC_STEPS = 10   # plain progress lines per trial when the output is not a terminal (every 10 %)


def _fmt_s(s: float) -> str:
  s = max(0, int(s))
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_text(event: dict) -> str:
  """`step 21 | loss 6.3120 | 1,020 tok/s | MFU 3.1% | 0m12s left` from a progress event (missing fields left out)."""
  parts = [f"step {event['step']}"] if "step" in event else []
  parts.append(f"loss {event['loss']:.4f}")
  if event.get("tok_s") is not None:
    parts.append(f"{event['tok_s']:,.0f} tok/s")
  if event.get("mfu") is not None:
    parts.append(f"MFU {event['mfu']:.1f}%")
  if event["progress"] > 0:
    parts.append(f"{_fmt_s(event['t'] / event['progress'] - event['t'])} left")   # budget = t / progress
  return " | ".join(parts)


def abort_text(record: dict | None) -> str:
  """The early-abort watcher's latest assessment in words."""
  if not record:
    return "early abort: no assessment yet"
  verdict = "stop" if record.get("stop") else "continue"
  return (f"early abort at {100 * record['fraction']:.0f}%: predicted val_bpb {record['predicted_val_bpb']:.4f} "
          f"vs best {record['best_val_bpb']:.4f} -> {verdict}")


class _Watched:
  """A trial's monitor (the early-abort watcher) with the display looking on."""

  def __init__(self, display: "RunDisplay", trial_id: str, inner: Monitor):
    self.display, self.trial_id, self.inner = display, trial_id, inner

  @property
  def record(self) -> dict | None:
    return self.inner.record

  def observe(self, event: dict) -> bool:
    stop = self.inner.observe(event)   # the decision first; the display cannot change it
    self.display.progress(self.trial_id, event, self.inner.record)
    return stop


class RunDisplay:
  def __init__(self, max_experiments: int | None, max_hours: float | None, console: Console | None = None,
               refresh_per_second: float = 2.0):
    self.console = console or Console(stderr=True, highlight=False)
    self.max_experiments, self.max_hours = max_experiments, max_hours
    self.refresh_per_second = refresh_per_second
    self.loop: Any = None                 # the SearchLoop (best, sigma, rates, the pending description)
    self.flights: dict[str, dict] = {}    # trials in flight by id: description, start, last event, abort record
    self.failed = False                   # a display error happened: live part off
    self._live: Live | None = None
    self._start_lock = threading.Lock()

  # ---- hooks ------------------------------------------------------------------------------------------
  def attach(self, loop: Any) -> None:
    self.loop = loop

  def monitor(self, trial_id: str, inner: Monitor) -> Monitor:
    """The evaluator's `watch`: called as a trial starts; returns its monitor with the display chained on."""
    self._guard("trial start", self._start, trial_id)
    return _Watched(self, trial_id, inner)

  def progress(self, trial_id: str, event: dict, abort: dict | None) -> None:
    if not self.failed:
      self._guard("progress", self._progress, trial_id, event, abort)

  def trial(self, loop: Any, rec: TrialRecord) -> None:
    """Called by the loop after every trial: the trial's summary line."""
    self.flights.pop(rec.trial_id, None)
    self._guard("trial line", self._trial_line, loop, rec)

  def close(self) -> None:
    """Removes the live panel (before the final report is printed)."""
    live, self._live = self._live, None
    if live is not None:
      try:
        live.stop()
      except Exception:   # noqa: BLE001 - the terminal is being left anyway
        pass

  # ---- work -------------------------------------------------------------------------------------------
  def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
    try:
      fn(*args)
    except Exception as e:  # noqa: BLE001 - a display bug must never cost a trial or the loop
      self._fail(what, e)
    if self.failed:
      self.close()

  def _fail(self, what: str, e: Exception) -> None:
    if not self.failed:
      self.failed = True
      warnings.warn(f"arrl display: {what} failed ({e!r}); the live display is off for this run", stacklevel=2)

  def _start(self, trial_id: str) -> None:
    waiting = [self.loop.pending, *self.loop.in_flight]
    description = next((p.description for p in waiting if p is not None and p.trial_id == trial_id), "")
    self.flights[trial_id] = {"trial_id": trial_id, "description": description, "t0": time.monotonic(),
                              "event": None, "abort": None, "printed": 0}
    with self._start_lock:   # parallel workers start trials from their own threads
      if self.console.is_terminal and not self.failed and self._live is None:
        self._live = Live(get_renderable=self._render, console=self.console,
                          refresh_per_second=self.refresh_per_second, transient=True, redirect_stdout=False)
        self._live.start(refresh=True)

  def _progress(self, trial_id: str, event: dict, abort: dict | None) -> None:
    flight = self.flights.get(trial_id)
    if flight is None:
      return
    flight["event"], flight["abort"] = event, abort
    if self.console.is_terminal:
      return   # the live panel shows it
    step = min(int(float(event["progress"]) * PERIODIC_STEPS), PERIODIC_STEPS)
    if step > flight["printed"]:
      flight["printed"] = step
      self.console.print(f"  trial {trial_id} {100 * step // PERIODIC_STEPS:3d}% | {progress_text(event)}",
                         markup=False, highlight=False, soft_wrap=True)

  def run_text(self, loop: Any) -> str:
    """best | sigma | trials run | trials/h | ETA of a SearchLoop."""
    best = f"{loop.best_score:.6f}" if loop.best_score is not None else "-"
    rate = loop.executed / max(loop.elapsed_s, 1e-9) * 3600
    return (f"best {best} | sigma {loop.sigma:.4f} | {loop.executed} trials run | {rate:.1f} trials/h | "
            f"ETA {self.eta(loop.executed, loop.elapsed_s)}")

  def panel(self) -> RenderableType:
    """The live panel's content."""
    flights = list(self.flights.values())   # a snapshot: trials start and end on other threads
    lines: list[Any] = [] if flights else ["proposing the next trial ..."]
    for flight in flights:
      head = Text(f"trial {flight['trial_id']}", style="bold")
      head.append(f"  {_fmt_s(time.monotonic() - flight['t0'])} elapsed  ")
      head.append(flight["description"] or "", style="cyan")
      lines.append(head)
      event = flight["event"]
      lines.append(f"  {100 * event['progress']:.0f}% | {progress_text(event)}" if event else
                   "  starting: worker start-up and compile ...")
      lines.append("  " + abort_text(flight["abort"]))
    if self.loop is not None:
      lines.append("run: " + self.run_text(self.loop))
    return Text("\n").join(Text(x) if isinstance(x, str) else x for x in lines)

  def _render(self) -> RenderableType:
    """Called from rich's refresh thread: an error marks the display failed (closed by the next hook call)."""
    if self.failed:
      return Text("")
    try:
      return self.panel()
    except Exception as e:  # noqa: BLE001
      self._fail("rendering", e)
      return Text("")

  def eta(self, executed: int, elapsed_s: float) -> str:
    """Time until the first resource limit, at the observed trial rate."""
    left = []
    if self.max_hours is not None:
      left.append(self.max_hours * 3600 - elapsed_s)
    if self.max_experiments is not None and executed:
      left.append((self.max_experiments - executed) * elapsed_s / executed)
    if not left:
      return "until stopped"
    return _fmt_s(max(0.0, min(left)))

  def _trial_line(self, loop: Any, rec: TrialRecord) -> None:
    score = f"{rec.score:.6f}" if rec.score is not None else "-"
    if (rec.n_runs or 1) > 1:
      score += f" (mean of {rec.n_runs} runs {rec.mean_score:.6f})"
    colour = {Status.KEEP: "green", Status.BASELINE: "cyan", Status.DISCARD: "white"}.get(rec.status, "red")
    cached = " (cached)" if rec.cached else ""
    failed = rec.run_status not in (Status.OK, Status.ABORTED)
    error = f" | error: {escape(error_line(rec))}" if failed and error_line(rec) else ""
    self.console.print(
        f"trial {escape(rec.trial_id)} [{colour}]{rec.status:>15}[/{colour}]{cached} val_bpb {score} | "
        f"{self.run_text(loop)} | {escape(rec.description)}{error}", soft_wrap=True)
