"""Run one trial in isolation, under a hard deadline, and say what happened.

`Executor` is the interface the loop uses; `LocalProcessExecutor` runs each trial in a fresh worker
process (`python -m arrl.worker`, see its docstring for the protocol and the trial-function contract) in
its own session / process group, so a crash, OOM, segfault or hang costs that trial only, and the whole
group is SIGKILLed at the end of every trial, which also releases accelerator memory.

Statuses (`TrialResult.status`):
  ok               the trial returned a summary with a finite val_bpb, after more than 0 steps if it
                   reports num_steps (the loop then keeps or discards);
  diverged, compile-timeout, aborted
                   reported by the trial in its summary. The executor also sets compile-timeout when no
                   progress event came within `compile_cap_s` of the start, aborted when it asked the trial
                   to stop (early abort) and got no result, and diverged for an "ok" with a NaN/inf val_bpb;
  timeout          the hard deadline (budget + compile cap + eval allowance) passed: process group killed;
  crash            exception (its text in `error`), non-zero exit, death by signal, or the memory cap.

Memory cap: RLIMIT_AS cannot be used with CUDA (the driver maps far more virtual address space than it
uses), so the default cap is a watchdog in the parent that sums the resident memory of the worker's
process group from /proc every `rss_poll_s` and kills the group above `max_rss_mb` (default 80 % of
physical RAM) -> crash with an "OOM" note. `rlimit_as_mb` (off by default) adds a hard RLIMIT_AS for
CPU-only workers, where an over-allocation raises MemoryError in the trial. GPU memory is bounded by XLA
itself (XLA_PYTHON_CLIENT_MEM_FRACTION etc. in the worker's environment).

Overhead per trial: start-up is a fresh interpreter plus the trial module's imports (`startup_seconds`,
measured until the worker's "ready" event: ~0.05 s for the worker itself, a few seconds when the trial
imports jax). Compilation is amortised by JAX's persistent compilation cache, whose directory
(`JAX_COMPILATION_CACHE_DIR`, default $ARRL_CACHE/jax) and size bound (`nanochat_jax.cache`) the
executor sets for every worker. Workers are deliberately not reused across trials: a trial can leave
state behind (device-memory fragmentation, global jax.config flags, monkey-patched modules, leaked
threads) that would make the next trial's result depend on its predecessor; a few seconds per 5-minute
trial is the price of independent measurements.

Signals: the worker runs in a new session, so a terminal's Ctrl-C reaches only the loop. Any exception in
`run` (KeyboardInterrupt included) kills the worker's group before propagating, and the worker asks the
kernel to SIGKILL it if the loop process dies (PR_SET_PDEATHSIG), so no orphan keeps the GPU.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Protocol

from arrl.trial import REPORTABLE, Status
from nanochat_jax import cache

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # makes `arrl` importable in workers
_SUMMARY_FIELDS = ("val_bpb", "training_seconds", "training_wall_seconds", "compile_seconds", "peak_memory_mb",
                   "total_tokens_M", "num_steps", "env_digest")


@dataclasses.dataclass(frozen=True)
class TrialJob:
  trial_id: str
  fn: str                          # trial function, "package.module:function"
  payload: dict = dataclasses.field(default_factory=dict)   # JSON-serialisable, passed to fn
  budget_s: float = 300.0          # training time budget
  compile_cap_s: float = 180.0     # start-up + compile allowed before the first progress event
  eval_allowance_s: float = 120.0  # final evaluation and teardown
  log_path: str | None = None      # full worker log (the result keeps only a tail)

  def __post_init__(self) -> None:
    module, sep, name = self.fn.partition(":")
    if not (sep and module and name):
      raise ValueError(f"fn must look like 'package.module:function', got {self.fn!r}")
    if not self.trial_id:
      raise ValueError("trial_id must be a non-empty string")
    limits = (self.budget_s, self.compile_cap_s, self.eval_allowance_s)
    if not all(map(math.isfinite, limits)) or min(self.budget_s, self.compile_cap_s) <= 0 or self.eval_allowance_s < 0:
      raise ValueError(f"budget_s and compile_cap_s must be finite and > 0 and eval_allowance_s finite and >= 0 "
                       f"(the hard deadline is their sum), got {self.budget_s}, {self.compile_cap_s}, "
                       f"{self.eval_allowance_s}")
    try:
      json.dumps(self.payload)
    except (TypeError, ValueError) as e:
      raise ValueError(f"payload must be JSON-serialisable: {e}") from e

  @property
  def deadline_s(self) -> float:
    """Hard wall-clock limit from the worker's start."""
    return self.budget_s + self.compile_cap_s + self.eval_allowance_s


@dataclasses.dataclass
class TrialResult:
  trial_id: str
  status: Status                   # ok | crash | diverged | timeout | compile-timeout | aborted
  val_bpb: float | None = None
  training_seconds: float | None = None   # on the budget clock (nanochat_jax.env.budget_clock)
  training_wall_seconds: float | None = None
  compile_seconds: float | None = None
  total_seconds: float = 0.0       # wall clock of the whole trial, start-up included
  startup_seconds: float | None = None
  peak_memory_mb: float | None = None
  total_tokens_M: float | None = None
  num_steps: int | None = None
  env_digest: str | None = None
  error: str | None = None         # why it crashed / was killed
  abort: dict | None = None        # the early-abort prediction record (latest assessment)
  loss_curve: list[list[float]] = dataclasses.field(default_factory=list)   # [progress, loss]
  log_tail: str = ""
  summary: dict = dataclasses.field(default_factory=dict)   # the trial's summary as reported
  exit_code: int | None = None     # negative: killed by that signal
  started_at: float = 0.0          # unix time
  finished_at: float = 0.0

  def ledger_fields(self) -> dict[str, Any]:
    """The ledger fields this result fills (status/kept are the loop's: ok becomes keep or discard)."""
    out = dataclasses.asdict(self)
    for k in ("trial_id", "status", "summary", "exit_code"):
      del out[k]
    return out


class Monitor(Protocol):
  """Watches progress events in the parent (e.g. `arrl.abort.AbortWatcher`)."""
  record: dict | None              # stored as the result's `abort`

  def observe(self, event: dict) -> bool: ...   # True: ask the trial to stop now


class TrialCancelled(Exception):
  """`run` was cancelled (second stop signal): the worker was killed and the trial must not be recorded."""


class Executor(Protocol):
  """Runs trials. An implementation (local process, cluster job, ...) must:
  - start the trial function named by `job.fn` with `job.payload` in isolation from the caller;
  - deliver every progress event, in order, to `monitor.observe` and, when it returns True, make the
    trial's `ctx.should_stop()` true (and report status aborted if no result follows);
  - enforce `job.deadline_s` (-> timeout) and the compile cap (-> compile-timeout), and free the
    trial's resources whatever happens;
  - poll `cancel()` about every 0.1 s and, when it is true, kill the trial and raise TrialCancelled;
  - map outcomes to the statuses in this module's docstring and never raise for a trial failure.
  """

  def run(self, job: TrialJob, monitor: Monitor | None = None,
          cancel: Callable[[], bool] | None = None) -> TrialResult: ...


def physical_memory_mb() -> float:
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


@dataclasses.dataclass(frozen=True)
class WorkerLimits:
  max_rss_mb: float | None = dataclasses.field(default_factory=lambda: 0.8 * physical_memory_mb())
  rlimit_as_mb: float | None = None   # hard virtual-memory cap; CPU-only workers (breaks CUDA)
  rss_poll_s: float = 0.25
  stop_grace_s: float = 30.0          # after a stop request, time to return before being killed
  exit_grace_s: float = 5.0           # after the summary, time to exit before being killed
  log_tail_lines: int = 200

  def __post_init__(self) -> None:
    for name in ("max_rss_mb", "rlimit_as_mb"):
      value = getattr(self, name)
      if value is not None and value <= 0:
        raise ValueError(f"{name} must be > 0 or None, got {value}")
    if min(self.rss_poll_s, self.stop_grace_s, self.exit_grace_s) <= 0 or self.log_tail_lines < 1:
      raise ValueError("poll/grace times must be > 0 and log_tail_lines >= 1")


def group_rss_mb(pgid: int) -> float:
  """Resident memory of all processes in a process group, from /proc (0 where /proc is missing)."""
  if not os.path.isdir("/proc"):
    return 0.0
  total = 0
  with os.scandir("/proc") as entries:
    for entry in entries:
      if not entry.name.isdigit():
        continue
      try:
        with open(f"/proc/{entry.name}/stat", "rb") as f:
          fields = f.read().rsplit(b")", 1)[1].split()
      except (OSError, IndexError):   # the process exited meanwhile
        continue
      if int(fields[2]) == pgid:      # fields after "(comm)": state ppid pgrp ... rss is the 22nd
        total += int(fields[21])
  return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def _kill_group(pgid: int) -> None:
  try:
    os.killpg(pgid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass


class _Streams:
  """Line reader over the worker's event pipe and its merged stdout/stderr."""

  def __init__(self, event_fd: int, log_fd: int, log_path: str | None, tail_lines: int):
    self.sel = selectors.DefaultSelector()
    self.sel.register(event_fd, selectors.EVENT_READ, "event")
    self.sel.register(log_fd, selectors.EVENT_READ, "log")
    self.buffers = {"event": b"", "log": b""}
    self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    self.log_file = open(log_path, "ab", buffering=0) if log_path else None  # unbuffered: the log grows live

  @property
  def open(self) -> bool:
    return bool(self.sel.get_map())

  def note(self, text: str) -> None:
    self.tail.append(f"[arrl.runner] {text}")

  def pump(self, timeout: float) -> list[dict]:
    """Read what is available (waiting up to `timeout`); returns the complete events that arrived."""
    events = []
    for key, _ in self.sel.select(timeout):
      data = os.read(key.fd, 1 << 16)
      if not data:
        self.sel.unregister(key.fd)
      if key.data == "log" and self.log_file:
        self.log_file.write(data)
      *lines, self.buffers[key.data] = (self.buffers[key.data] + data).split(b"\n")
      if not data and self.buffers[key.data]:   # EOF: flush a last line without newline
        lines.append(self.buffers[key.data])
        self.buffers[key.data] = b""
      for line in lines:
        if key.data == "log":
          self.tail.append(line.decode(errors="replace"))
        elif line.strip():
          try:
            events.append(json.loads(line))
          except ValueError:
            self.note(f"ignored a malformed event line: {line[:200]!r}")
    return events

  def close(self) -> None:
    for key in list(self.sel.get_map().values()):
      self.sel.unregister(key.fd)
    self.sel.close()
    if self.log_file:
      self.log_file.close()


@dataclasses.dataclass
class _Watch:
  """What the parent saw of one worker."""
  summary: dict | None = None
  error: str | None = None
  killed: str | None = None          # timeout | compile-timeout | oom | stop-grace | exit-grace
  oom_note: str | None = None
  stop_sent: bool = False
  monitor_off: bool = False          # the monitor raised: no early abort for this trial
  ready_at: float | None = None
  curve: list[list[float]] = dataclasses.field(default_factory=list)


def _classify(w: _Watch, exit_code: int | None) -> tuple[Status, str | None]:
  """(status, error text) from what was observed."""
  if w.summary is not None:
    status = w.summary.get("status", Status.OK)
    if status not in REPORTABLE:
      return Status.CRASH, f"trial reported unknown status {status!r} (expected one of {', '.join(REPORTABLE)})"
    val = w.summary.get("val_bpb")
    if status == Status.OK and val is None:
      return (Status.ABORTED, None) if w.stop_sent else (Status.CRASH, "trial reported ok without a val_bpb")
    if status == Status.OK and not (isinstance(val, (int, float)) and math.isfinite(val)):
      return Status.DIVERGED, f"val_bpb is {val}"
    if status == Status.OK and w.summary.get("num_steps") == 0:   # an untrained model's score is no result
      return Status.CRASH, "trial reported ok after 0 training steps"
    return Status(status), w.summary.get("error")
  if w.error is not None:
    note = " (OOM)" if w.error.startswith("MemoryError") else ""
    return Status.CRASH, w.error + note
  if w.stop_sent:
    return Status.ABORTED, "killed after not stopping within the grace period" if w.killed else None
  if w.killed == "oom":
    return Status.CRASH, w.oom_note
  if w.killed in (Status.TIMEOUT, Status.COMPILE_TIMEOUT):
    return Status(w.killed), f"killed: {w.killed}"
  if exit_code is not None and exit_code < 0:
    name = signal.Signals(-exit_code).name
    hint = " (possibly the kernel OOM killer)" if -exit_code == signal.SIGKILL else ""
    return Status.CRASH, f"worker killed by {name}{hint}"
  return Status.CRASH, f"worker exited with code {exit_code} without a summary"


_DEFAULT_JAX_CACHE = "$ARRL_CACHE/jax"


class LocalProcessExecutor:
  """One fresh `python -m arrl.worker` process per trial on this machine.

  jax_cache_dir: the workers' persistent compilation cache (bounded, see `nanochat_jax.cache`); by default the
  one under $ARRL_CACHE (or ~/.cache/arrl); None: no persistent cache.
  """

  def __init__(self, limits: WorkerLimits | None = None, jax_cache_dir: str | None = _DEFAULT_JAX_CACHE,
               pythonpath: tuple[str, ...] = (), env: dict[str, str] | None = None,
               python: str = sys.executable, cpus: tuple[int, ...] = ()):
    self.limits = limits or WorkerLimits()
    self.cpus = tuple(cpus)   # cores the worker pins itself to (arrl.parallel slots); () = not pinned
    self.env = dict(os.environ if env is None else env)
    if jax_cache_dir == _DEFAULT_JAX_CACHE:
      jax_cache_dir = str(cache.jax_cache_dir(self.env.get("ARRL_CACHE")))
    self.jax_cache_dir, self.pythonpath, self.python = jax_cache_dir, tuple(pythonpath), python

  def _worker_env(self) -> dict[str, str]:
    env = dict(self.env)
    env["PYTHONPATH"] = os.pathsep.join([_ROOT, *self.pythonpath, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    if self.jax_cache_dir:
      os.makedirs(self.jax_cache_dir, exist_ok=True)
      env["JAX_COMPILATION_CACHE_DIR"] = self.jax_cache_dir
      env.setdefault(cache.MAX_SIZE_ENV, str(cache.JAX_CACHE_MAX_BYTES))
    return env

  def run(self, job: TrialJob, monitor: Monitor | None = None,
          cancel: Callable[[], bool] | None = None) -> TrialResult:
    started_at, t0 = time.time(), time.monotonic()
    cmd = [self.python, "-m", "arrl.worker", "--parent-pid", str(os.getpid())]
    if self.limits.rlimit_as_mb:
      cmd += ["--rlimit-as-mb", str(self.limits.rlimit_as_mb)]
    if self.cpus:
      cmd += ["--cpus", ",".join(map(str, self.cpus))]
    event_r, event_w = os.pipe()
    try:
      proc = subprocess.Popen(cmd + ["--event-fd", str(event_w)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(event_w,),
                              start_new_session=True, env=self._worker_env())
    except BaseException:
      os.close(event_r)
      raise
    finally:
      os.close(event_w)
    streams = _Streams(event_r, proc.stdout.fileno(), job.log_path, self.limits.log_tail_lines)
    watch = _Watch()
    try:
      try:
        proc.stdin.write(json.dumps({"trial_id": job.trial_id, "fn": job.fn, "payload": job.payload}).encode())
        proc.stdin.close()
      except BrokenPipeError:
        streams.note("worker exited before reading its job")
      self._supervise(proc, streams, watch, job, monitor, cancel, t0)
    finally:
      _kill_group(proc.pid)
      proc.wait()
      drain_until = time.monotonic() + 1.0
      while streams.open and time.monotonic() < drain_until:
        for event in streams.pump(0.05):
          self._handle(event, watch, streams, proc, None, t0)
      streams.close()
      os.close(event_r)
      proc.stdout.close()
    status, error = _classify(watch, proc.returncode)
    summary = watch.summary or {}
    fields = {k: summary.get(k) for k in _SUMMARY_FIELDS}
    if status != Status.OK:   # a failed run has no score (and a NaN would not be valid JSON in the ledger)
      fields["val_bpb"] = None
    return TrialResult(
        trial_id=job.trial_id, status=status, error=error, summary=summary, exit_code=proc.returncode, **fields,
        total_seconds=time.monotonic() - t0,
        startup_seconds=None if watch.ready_at is None else watch.ready_at - t0,
        abort=monitor.record if monitor is not None else None, loss_curve=watch.curve,
        log_tail="\n".join(streams.tail), started_at=started_at, finished_at=time.time())

  def _handle(self, event: dict, watch: _Watch, streams: _Streams, proc: subprocess.Popen,
              monitor: Monitor | None, t0: float) -> None:
    kind = event.get("type") if isinstance(event, dict) else None
    if kind == "ready":
      watch.ready_at = time.monotonic()
    elif kind == "summary":
      watch.summary = {k: v for k, v in event.items() if k != "type"}
    elif kind == "error":
      watch.error = str(event.get("error"))
    elif kind == "progress":
      try:
        point = [float(event["progress"]), float(event["loss"])]
      except (KeyError, TypeError, ValueError):
        streams.note(f"ignored a progress event without numeric progress/loss: {str(event)[:200]}")
        return
      watch.curve.append(point)
      if monitor is None or watch.stop_sent or watch.monitor_off:
        return
      try:
        stop = monitor.observe(event)
      except Exception as e:  # a bug in an abort fit must not cost the trial (or the loop)
        streams.note(f"early-abort monitor failed and is off for this trial: {e!r}")
        watch.monitor_off = True
        return
      if stop:
        streams.note(f"early abort requested at progress {point[0]:.3f} ({time.monotonic() - t0:.1f} s)")
        watch.stop_sent = True
        try:
          os.kill(proc.pid, signal.SIGUSR1)
        except ProcessLookupError:   # it has just exited on its own
          pass
    else:
      streams.note(f"ignored an event of unknown type: {str(event)[:200]}")

  def _supervise(self, proc: subprocess.Popen, streams: _Streams, watch: _Watch, job: TrialJob,
                 monitor: Monitor | None, cancel: Callable[[], bool] | None, t0: float) -> None:
    """Pump events until the worker is done or must be killed (the caller kills the group)."""
    lim = self.limits
    ended_at = stop_at = None
    next_rss = t0
    while True:
      if cancel is not None and cancel():
        raise TrialCancelled(f"trial {job.trial_id} abandoned on request")
      for event in streams.pump(0.05):
        self._handle(event, watch, streams, proc, monitor, t0)
      now = time.monotonic()
      if watch.stop_sent and stop_at is None:
        stop_at = now
      if ended_at is None and (watch.summary is not None or watch.error is not None or proc.poll() is not None):
        ended_at = now
      if ended_at is not None:
        if proc.poll() is not None and not streams.open:
          return
        if now > ended_at + lim.exit_grace_s:
          watch.killed = "exit-grace"
          return
        continue
      if now > t0 + job.deadline_s:
        watch.killed = Status.TIMEOUT
        return
      if not watch.curve and now > t0 + job.compile_cap_s:
        watch.killed = Status.COMPILE_TIMEOUT
        return
      if stop_at is not None and now > stop_at + lim.stop_grace_s:
        watch.killed = "stop-grace"
        return
      if lim.max_rss_mb is not None and now >= next_rss:
        next_rss = now + lim.rss_poll_s
        rss = group_rss_mb(proc.pid)
        if rss > lim.max_rss_mb:
          watch.killed = "oom"
          watch.oom_note = f"OOM: worker group used {rss:.0f} MB > cap {lim.max_rss_mb:.0f} MB"
          return
