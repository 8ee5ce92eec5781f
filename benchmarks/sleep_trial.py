"""The sleeping trial of `benchmarks.parallel`, in a module of its own that imports only `os` and `time`.

The trial's module is imported by every worker process before its "ready" event, so a trial defined
beside the benchmark (numpy, the loop, the agents) would add ~0.2 CPU-seconds of imports to each start
and measure the benchmark's imports, not the executor.
"""
from __future__ import annotations

import os
import time
from typing import Any


def sleep_trial(payload: dict, ctx: Any) -> dict:
  """Sleep `sleep_s` seconds, reporting progress every 0.5 s; the summary names the process that started this one."""
  total, t0 = payload["sleep_s"], time.monotonic()
  while (t := time.monotonic() - t0) < total:
    ctx.progress(t=t, progress=t / total, loss=1.0)
    time.sleep(min(0.5, total - t))
  return {"val_bpb": 1.0, "training_seconds": total, "parent_pid": os.getppid()}
