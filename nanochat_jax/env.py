"""The frozen environment: presets, budgets, eval protocol and their digest.

Nothing a search edit can touch lives here. Every result carries `env_digest`, the sha256 of
these constants together with the corpus split and the tokenizer, so results compare fairly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable

from nanochat_jax.config import ModelConfig, OptimConfig, Program, ScheduleConfig

EVAL_PROTOCOL = "bpb-v1"         # sum nats over targets with bytes > 0 / (ln 2 * their bytes)
DIVERGENCE_LOSS = 100.0          # a training loss above this (or NaN/inf) ends the run as `diverged`
VOCAB_SIZE = 8192                # including 4 special tokens
MAX_BUDGET_S = 24 * 3600.0       # longest training budget accepted (train CLI, arrl.main, run_trial)
BUDGET_CLOCK = "preset-cpu-clock-v2"  # what a budget second is: see `budget_clock` and `Preset.cpu_clock`
DATA_ORDER = "doc-spread-v1"     # how a seed orders the training pieces: `loader.spread_order`
CORES_ENV = "ARRL_TRIAL_CORES"   # cores granted to a trial (set by arrl's slots and Ray executor)
CPU_CLOCK_WALL_SLACK = 10.0      # a CPU trial may take this many budgets of wall time before it times out
# A budget second of a "flops" CPU clock: what the 2-core reference machine (AMD EPYC, XLA CPU, float32) computes
# in a second of training: 9.2 GFLOP per 0.23 CPU-second step of the 512-token cpu program, 15.8 GFLOP per ~0.40
# of the 1,024-token one (XLA's cost analysis of the compiled step; benchmarks/results/cpu_clock/).
CPU_FLOPS_PER_S = 8.0e10
CPU_CLOCKS = ("cpu-time", "flops")


@dataclasses.dataclass(frozen=True)
class Preset:
  name: str
  seq_len: int                   # tokens per row (the model's context)
  budget_s: float                # seconds of training steps, on the budget clock (`budget_clock`)
  eval_tokens: int               # validation tokens scored for val_bpb
  eval_batch_rows: int
  compile_cap_s: float           # compile longer than this -> status compile-timeout
  max_params: int                # cap on a program's parameter count (arrl's constraint)
  max_memory_gb: float           # cap on the estimated training memory (arrl's constraint)
  program: Program               # the default program (autoresearch's train.py on gpu)
  cpu_clock: str = "cpu-time"    # the budget clock when training on a CPU, one of CPU_CLOCKS (`budget_clock`)

  def __post_init__(self) -> None:
    if self.cpu_clock not in CPU_CLOCKS:
      raise ValueError(f"preset {self.name}: cpu_clock must be one of {CPU_CLOCKS}, got {self.cpu_clock!r}")

  def frozen_dict(self) -> dict:
    d = dataclasses.asdict(self)
    del d["program"], d["max_params"], d["max_memory_gb"]  # mutable target and search caps, not environment
    return d


_GPU_PROGRAM = Program(
    model=ModelConfig(vocab_size=VOCAB_SIZE, sequence_len=2048),
    optim=OptimConfig(),
    schedule=ScheduleConfig(total_batch_tokens=2**19, device_batch_size=128),
)

# Chosen by measurement on 2 CPU cores (see README "CPU preset"): 1,024 tokens a step, ~152 steps in a 30 s budget on
# the flops clock; the seed spread at this step count is below the 512-token step's (benchmarks/seed_spread.py).
_CPU_PROGRAM = Program(
    model=ModelConfig(vocab_size=VOCAB_SIZE, sequence_len=256, depth=4, aspect_ratio=32, head_dim=64),
    optim=OptimConfig(),
    schedule=ScheduleConfig(total_batch_tokens=2**10, device_batch_size=4),
)

# Smoke tests and demos: a trial takes seconds on a CPU (not meant to reach a good val_bpb).
_TINY_PROGRAM = Program(
    model=ModelConfig(vocab_size=VOCAB_SIZE, sequence_len=64, depth=2, aspect_ratio=32, head_dim=32,
                      window_pattern="SL"),
    optim=OptimConfig(),
    schedule=ScheduleConfig(total_batch_tokens=2**9, device_batch_size=8),
)

PRESETS: dict[str, Preset] = {
    "gpu": Preset(name="gpu", seq_len=2048, budget_s=300.0, eval_tokens=40 * 2**19, eval_batch_rows=128,
                  compile_cap_s=180.0, max_params=400_000_000, max_memory_gb=70.0, program=_GPU_PROGRAM),
    "cpu": Preset(name="cpu", seq_len=256, budget_s=30.0, eval_tokens=2**15, eval_batch_rows=16,
                  compile_cap_s=90.0, max_params=20_000_000, max_memory_gb=8.0, program=_CPU_PROGRAM,
                  cpu_clock="flops"),
    "tiny": Preset(name="tiny", seq_len=64, budget_s=5.0, eval_tokens=2**12, eval_batch_rows=16,
                   compile_cap_s=90.0, max_params=5_000_000, max_memory_gb=4.0, program=_TINY_PROGRAM),
}


def get_preset(name: str) -> Preset:
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
  return PRESETS[name]


def budget_clock(backend: str) -> Callable[[], float]:
  """The clock a training budget is counted on, for training on JAX backend `backend` (see `step_cost_s`).

  Accelerators ("gpu", "tpu"): wall-clock seconds (a trial owns its devices). "cpu": this process's CPU
  seconds (all its threads) divided by the cores it was granted ($ARRL_TRIAL_CORES, else the cores it may run
  on). On a shared CPU machine wall time buys a trial more or fewer steps as other processes come and go, so
  the score follows machine load, not the program; CPU time removes most of that, and on an idle machine whose
  cores the trial keeps busy it runs at wall-clock speed (a program that leaves cores idle gets its budget
  over more wall time).
  """
  if backend != "cpu":
    return time.perf_counter
  cores = granted_cores()
  return lambda: time.process_time() / cores


def step_cost_s(preset: Preset, backend: str, step_flops: float) -> float | None:
  """Budget seconds one training step costs when they do not come from a clock, else None.

  A preset whose `cpu_clock` is "flops" charges each step on a CPU its compiled FLOPs at CPU_FLOPS_PER_S: the
  budget is then a fixed amount of computation, so a program makes the same number of steps on any machine
  under any load, and its score depends on the seed alone. CPU time did not get there on shared machines:
  per-core speed changes with what the other hardware threads run (the cpu program made 124-159 steps in 30
  CPU-seconds at load 4-6). The price: on a CPU the search then optimises for a FLOP budget, and a program
  that is slow for its FLOPs (memory-bound, many small ops) is not charged for it; accelerators keep the wall
  clock.
  """
  if backend != "cpu" or preset.cpu_clock != "flops":
    return None
  if not step_flops > 0:
    raise ValueError(f"preset {preset.name}: the flops clock needs the step's FLOPs from XLA's cost analysis, "
                     f"got {step_flops!r}")
  return step_flops / CPU_FLOPS_PER_S


def granted_cores() -> int:
  """The CPU cores this process's trial was granted: $ARRL_TRIAL_CORES, else its affinity mask."""
  given = os.environ.get(CORES_ENV, "")
  if given.isdigit() and int(given) > 0:
    return int(given)
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def wall_limit_s(budget_s: float, on_accelerator: bool) -> float:
  """Wall-clock seconds a trial's training may take before its runner calls it a timeout (a hang).

  On an accelerator the budget is wall time and the trial stops on time by itself. On a CPU it is CPU time or
  FLOPs, and a busy (or slower) machine stretches it on the wall clock (5.6x was measured at load 19 on 2 cores): a load spike
  must not turn a good program into a timeout.
  """
  return budget_s * (1.0 if on_accelerator else CPU_CLOCK_WALL_SLACK)


def check_budget(budget_s: Any) -> float:
  """`budget_s` as a float in (0, MAX_BUDGET_S]; NaN, inf and non-numbers are refused."""
  if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not 0 < budget_s <= MAX_BUDGET_S:
    raise ValueError(f"budget must be a number of seconds in (0, {MAX_BUDGET_S:.0f}], got {budget_s!r}")
  return float(budget_s)


def env_digest(preset: Preset, corpus_digest: str, tokenizer_digest: str) -> str:
  """sha256 (16 hex) of everything that must stay fixed for results to compare."""
  blob = json.dumps({
      "protocol": EVAL_PROTOCOL, "clock": BUDGET_CLOCK, "data_order": DATA_ORDER, "divergence_loss": DIVERGENCE_LOSS, "preset": preset.frozen_dict(),
      "corpus": corpus_digest, "tokenizer": tokenizer_digest,
  }, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]
