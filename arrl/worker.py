"""Trial worker: `python -m arrl.worker --event-fd N --parent-pid P [--rlimit-as-mb M] [--cpus 0,1]`.

Runs one trial function in its own process (started by `arrl.runner.LocalProcessExecutor`). Protocol:
  stdin      the job as JSON: {"trial_id", "fn": "module:function", "payload"}; read once at start;
  event fd   JSON lines to the parent: {"type": "ready"} once the trial function is imported,
             {"type": "progress", "t", "progress", "loss", ...} from the trial, then exactly one of
             {"type": "summary", ...the trial's returned dict} or {"type": "error", "error", "traceback"};
  stdout/err free-form logs (the parent keeps a tail) — so a stray print can never corrupt the protocol;
  SIGUSR1    "stop cleanly": sets a flag the trial polls with `ctx.should_stop()`.

The trial function: `fn(payload: dict, ctx: TrialContext) -> dict`. It calls `ctx.progress(...)` as it
trains and returns a summary: {"status": "ok" | "diverged" | "compile-timeout" | "aborted" (default
"ok"), "val_bpb", "training_seconds", "compile_seconds", "peak_memory_mb", "total_tokens_M", "num_steps",
...}. Any exception (MemoryError included) becomes an "error" event and exit code 1.

This module imports only the standard library so that start-up stays cheap; heavy imports (jax) happen
when the trial function's module is imported.
"""
from __future__ import annotations

import argparse
import ctypes
import faulthandler
import importlib
import json
import os
import resource
import signal
import sys
import threading
import traceback
from typing import Any, Callable, TextIO

PR_SET_PDEATHSIG = 1


class TrialContext:
  """What a trial function gets besides its payload: progress reporting and the stop flag."""

  def __init__(self, trial_id: str, events: TextIO):
    self.trial_id = trial_id
    self._events = events
    self._lock = threading.Lock()
    self._stop = False

  def emit(self, type_: str, **fields: Any) -> None:
    line = json.dumps({"type": type_, **fields})
    with self._lock:
      self._events.write(line + "\n")
      self._events.flush()

  def progress(self, *, t: float, progress: float, loss: float, **extra: Any) -> None:
    """t: training seconds so far; progress: fraction of the budget in [0, 1]; loss: training loss."""
    self.emit("progress", t=float(t), progress=float(progress), loss=float(loss), **extra)

  def should_stop(self) -> bool:
    """True once the parent asked the trial to stop (early abort): return {"status": "aborted"} soon."""
    return self._stop

  def request_stop(self) -> None:
    self._stop = True


def resolve(spec: str) -> Callable[..., Any]:
  """'package.module:function' -> the function."""
  module, sep, name = spec.partition(":")
  if not sep or not module or not name:
    raise ValueError(f"trial function must look like 'package.module:function', got {spec!r}")
  fn = getattr(importlib.import_module(module), name, None)
  if not callable(fn):
    raise ValueError(f"{spec!r} is not a callable")
  return fn


def _die_with_parent(parent_pid: int) -> None:
  """Linux: get SIGKILL when the parent dies (kill -9 of the loop must not leave a GPU-holding orphan)."""
  try:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
  except (OSError, AttributeError):   # not Linux: the parent's process-group kill is the only guard
    return
  if os.getppid() != parent_pid:      # the parent died before prctl took effect
    os._exit(1)


def main(argv: list[str] | None = None) -> None:
  ctx_box: list[TrialContext] = []
  # First thing: SIGUSR1's default action is to terminate, and a stop request must never kill us.
  signal.signal(signal.SIGUSR1, lambda *_: ctx_box and ctx_box[0].request_stop())
  parser = argparse.ArgumentParser(prog="python -m arrl.worker")
  parser.add_argument("--event-fd", type=int, required=True)
  parser.add_argument("--parent-pid", type=int, required=True)
  parser.add_argument("--rlimit-as-mb", type=float, default=None)
  parser.add_argument("--cpus", help="comma-separated cores to pin this worker (and its threads) to")
  args = parser.parse_args(argv)
  _die_with_parent(args.parent_pid)
  if args.cpus:   # before any import that sizes a thread pool from the affinity mask (XLA, OpenMP)
    os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
  faulthandler.enable()   # a segfault leaves a Python traceback in the log tail
  if args.rlimit_as_mb:
    limit = int(args.rlimit_as_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
  events = os.fdopen(args.event_fd, "w")
  job = json.load(sys.stdin)
  ctx = TrialContext(job["trial_id"], events)
  ctx_box.append(ctx)
  code = 0
  try:
    fn = resolve(job["fn"])
    ctx.emit("ready")
    summary = fn(job.get("payload", {}), ctx)
    if not isinstance(summary, dict):
      raise TypeError(f"trial function must return a dict summary, got {type(summary).__name__}")
    ctx.emit("summary", **summary)
  except BaseException as e:  # everything, SystemExit and MemoryError included, is reported as a crash
    code = 1
    traceback.print_exc()
    ctx.emit("error", error=f"{type(e).__name__}: {e}"[:2000], traceback=traceback.format_exc()[-8000:])
  sys.stdout.flush()
  sys.stderr.flush()
  # Skip interpreter teardown: a hang or crash there (e.g. in an accelerator runtime's exit hooks) must
  # not cost the result that was just reported.
  os._exit(code)


if __name__ == "__main__":
  main()
