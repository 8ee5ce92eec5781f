"""Worker slots: N trials at once on one machine, each on its own GPU(s) or its own CPU cores.

A slot is the share of the machine one trial gets. On a GPU machine each slot owns `devices_per_trial`
GPUs through CUDA_VISIBLE_DEVICES and no GPU is ever in two slots: two trials sharing a GPU under a
wall-clock budget measure each other's load, not their programs. On CPU each slot owns disjoint cores:
the worker pins itself to them (sched_setaffinity, inherited by XLA's and OpenMP's threads, and XLA
sizes its thread pool from the affinity mask) and the OpenMP/BLAS thread counts are set to the slot's
core count, so N workers never oversubscribe the machine.

GPUs are found without importing jax (the loop process must not initialise an accelerator): from
CUDA_VISIBLE_DEVICES when it is set, else from `nvidia-smi -L`.

`SlotExecutor` runs each trial through a `LocalProcessExecutor` bound to a free slot; `run` may be called
from N threads at once and blocks while every slot is busy.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import subprocess
from typing import Callable

from arrl.runner import LocalProcessExecutor, Monitor, TrialJob, TrialResult, WorkerLimits
from nanochat_jax.env import CORES_ENV

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclasses.dataclass(frozen=True)
class Slot:
  index: int
  gpus: tuple[str, ...] = ()     # CUDA device ids this slot owns
  cpus: tuple[int, ...] = ()     # cores this slot is pinned to (CPU machines); () = not pinned
  devices: int = 1               # accelerator devices per trial (CPU: XLA host devices)

  def env(self) -> dict[str, str]:
    """Environment overrides for a worker in this slot."""
    out: dict[str, str] = {}
    if self.gpus:
      out["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
    if self.cpus:   # the budget clock divides CPU time by the granted cores
      out.update({k: str(len(self.cpus)) for k in (*THREAD_VARS, CORES_ENV)})
    if not self.gpus and self.devices > 1:
      flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
      out["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={self.devices}"])
    return out

  def describe(self) -> str:
    if self.gpus:
      return f"GPU {','.join(self.gpus)}"
    return f"cores {','.join(map(str, self.cpus))}" if self.cpus else "unpinned"


def visible_gpus(env: dict[str, str] | None = None) -> list[str]:
  """CUDA device ids this process may use: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L` (none without it)."""
  env = os.environ if env is None else env
  if "CUDA_VISIBLE_DEVICES" in env:
    return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
  if shutil.which("nvidia-smi") is None:
    return []
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i in range(sum(line.startswith("GPU ") for line in out.splitlines()))]


def plan_slots(workers: int | None = None, devices_per_trial: int = 1, gpus: list[str] | None = None,
               cpus: list[int] | None = None) -> list[Slot]:
  """Split the machine into `workers` slots (default: one per `devices_per_trial` GPUs, or 1 on CPU).

  Raises ValueError (naming --workers / --devices-per-trial) when the machine cannot hold them.
  """
  if devices_per_trial < 1 or (workers is not None and workers < 1):
    raise ValueError("--workers and --devices-per-trial must be >= 1")
  gpus = visible_gpus() if gpus is None else gpus
  k = devices_per_trial
  if gpus:
    n = workers if workers is not None else len(gpus) // k
    if n < 1 or n * k > len(gpus):
      raise ValueError(f"--workers {workers or n} x --devices-per-trial {k} needs {max(n, 1) * k} GPUs, "
                       f"{len(gpus)} visible ({','.join(gpus)}); two trials never share a GPU")
    return [Slot(i, gpus=tuple(gpus[i * k:(i + 1) * k]), devices=k) for i in range(n)]
  cores = sorted(os.sched_getaffinity(0)) if cpus is None else list(cpus)
  n = workers or 1
  if n > len(cores):
    raise ValueError(f"--workers {n} needs {n} CPU cores (one each at least), this process may use {len(cores)}")
  if n == 1:   # the whole machine: no pinning, as before slots existed
    return [Slot(0, devices=k)]
  per = len(cores) // n
  return [Slot(i, cpus=tuple(cores[i * per:(i + 1) * per]), devices=k) for i in range(n)]


class SlotExecutor:
  """An Executor over worker slots: each `run` takes a free slot (blocking while all are busy)."""

  def __init__(self, slots: list[Slot], limits: WorkerLimits | None = None, env: dict[str, str] | None = None,
               **kwargs):
    if not slots:
      raise ValueError("SlotExecutor needs at least one slot")
    self.slots = slots
    base = dict(os.environ if env is None else env)
    self._executors = {s.index: LocalProcessExecutor(limits, env={**base, **s.env()}, cpus=s.cpus, **kwargs)
                       for s in slots}
    self._free: queue.Queue[Slot] = queue.Queue()
    for s in slots:
      self._free.put(s)

  @property
  def workers(self) -> int:
    return len(self.slots)

  @property
  def on_gpu(self) -> bool:
    """Whether trials train on GPUs (every slot owns GPUs on a GPU machine, none on a CPU one)."""
    return bool(self.slots[0].gpus)

  def run(self, job: TrialJob, monitor: Monitor | None = None,
          cancel: Callable[[], bool] | None = None) -> TrialResult:
    slot = self._free.get()
    try:
      return self._executors[slot.index].run(job, monitor=monitor, cancel=cancel)
    finally:
      self._free.put(slot)
