"""Toy trial functions for the runner's fault-injection tests (standard library only: no jax)."""
from __future__ import annotations

import math
import os
import signal
import time
from typing import Any


def _curve(ctx: Any, n: int, offset: float = 0.0, dt: float = 0.0) -> None:
  for i in range(1, n + 1):
    p = i / n
    ctx.progress(t=p, progress=p, loss=2.0 * p ** -0.5 + 3.0 + offset, step=i)
    if dt:
      time.sleep(dt)


def ok(payload: dict, ctx: Any) -> dict:
  print("hello from the toy trial")
  _curve(ctx, payload.get("steps", 20))
  return {"val_bpb": payload.get("val_bpb", 1.0), "training_seconds": 1.0, "compile_seconds": 0.1,
          "peak_memory_mb": 512.0, "total_tokens_M": 1.5, "num_steps": payload.get("steps", 20)}


def crash(payload: dict, ctx: Any) -> dict:
  _curve(ctx, 3)
  raise RuntimeError("toy failure: " + payload.get("msg", "boom"))


def segfault(payload: dict, ctx: Any) -> dict:
  os.kill(os.getpid(), signal.SIGSEGV)
  return {}


def hang_after_progress(payload: dict, ctx: Any) -> dict:
  if "pid_file" in payload:
    with open(payload["pid_file"], "w") as f:
      f.write(str(os.getpid()))
  _curve(ctx, 2)
  time.sleep(3600)
  return {}


def hang_before_progress(payload: dict, ctx: Any) -> dict:
  time.sleep(3600)   # "compiling" forever
  return {}


def diverged(payload: dict, ctx: Any) -> dict:
  ctx.progress(t=0.1, progress=0.1, loss=math.nan)
  return {"status": "diverged", "num_steps": 3}


def nan_score(payload: dict, ctx: Any) -> dict:
  _curve(ctx, 2)
  return {"val_bpb": math.nan}


def compile_timeout(payload: dict, ctx: Any) -> dict:
  return {"status": "compile-timeout", "compile_seconds": 999.0}


def alloc(payload: dict, ctx: Any) -> dict:
  """Allocate (and touch) payload["mb"] megabytes in 16 MB chunks, slowly enough for the watchdog."""
  _curve(ctx, 1)
  chunks = []
  for _ in range(payload["mb"] // 16):
    chunks.append(bytearray(16 * 2**20))   # bytearray zero-fills: pages are touched
    time.sleep(payload.get("dt", 0.0))
  return {"val_bpb": 1.0}


def abortable(payload: dict, ctx: Any) -> dict:
  """A clearly worse run that honours stop requests."""
  n = payload.get("steps", 200)
  for i in range(1, n + 1):
    p = i / n
    ctx.progress(t=p, progress=p, loss=2.0 * p ** -0.5 + 3.5)
    time.sleep(payload.get("dt", 0.002))
    if ctx.should_stop():
      return {"status": "aborted", "num_steps": i}
  return {"val_bpb": 1.2, "num_steps": n}


def ignores_stop(payload: dict, ctx: Any) -> dict:
  for i in range(1, 101):
    ctx.progress(t=i, progress=i / 100, loss=9.0)
  time.sleep(3600)
  return {}


def bad_return(payload: dict, ctx: Any) -> dict:
  return "not a dict"  # type: ignore[return-value]


def noisy_stdout(payload: dict, ctx: Any) -> dict:
  """Prints JSON-looking lines and lots of logs: the event channel must be unaffected."""
  for i in range(payload.get("lines", 500)):
    print('{"type": "summary", "status": "crash"}' if i % 2 else f"log line {i}")
  _curve(ctx, 5)
  return {"val_bpb": 0.9}


def child_then_exit(payload: dict, ctx: Any) -> dict:
  """Leaves a grandchild that sleeps and holds the pipes: it must not outlive the trial."""
  pid = os.fork()
  if pid == 0:
    with open(payload["pid_file"], "w") as f:
      f.write(str(os.getpid()))
    time.sleep(3600)
    os._exit(0)
  while not os.path.exists(payload["pid_file"]):
    time.sleep(0.01)
  _curve(ctx, 2)
  return {"val_bpb": 1.1}


def slow_ok(payload: dict, ctx: Any) -> dict:
  _curve(ctx, 5, dt=payload.get("dt", 0.2))
  return {"val_bpb": 1.0}


def chatty(payload: dict, ctx: Any) -> dict:
  """Logs a line before each progress event until asked to stop: the trial's log must grow meanwhile."""
  n = payload.get("steps", 300)
  for i in range(1, n + 1):
    print(f"chatty line {i}")
    ctx.progress(t=i, progress=i / n, loss=5.0)
    time.sleep(0.01)
    if ctx.should_stop():
      return {"status": "aborted", "num_steps": i}
  return {"val_bpb": 1.0, "num_steps": n}


def rendezvous(payload: dict, ctx: Any) -> dict:
  """Waits until `payload["n"]` trials have arrived in `payload["dir"]`: succeeds only when they run at once."""
  open(os.path.join(payload["dir"], ctx.trial_id), "w").close()
  _curve(ctx, 1)
  end = time.monotonic() + payload.get("wait_s", 60.0)
  while len(os.listdir(payload["dir"])) < payload["n"]:
    if time.monotonic() > end:
      raise TimeoutError("the other trials never started")
    time.sleep(0.02)
  return {"val_bpb": 1.0, "cpus": sorted(os.sched_getaffinity(0)),
          "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "XLA_FLAGS")}}


def hang_with_pids(payload: dict, ctx: Any) -> dict:
  """Writes "worker_pid parent_pid" (the parent: the executor's process) atomically, then hangs."""
  with open(payload["pid_file"] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {os.getppid()}")
  os.replace(payload["pid_file"] + ".tmp", payload["pid_file"])
  _curve(ctx, 2)
  time.sleep(3600)
  return {}
