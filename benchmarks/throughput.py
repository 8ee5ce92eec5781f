"""Tokens/s and MFU of nanochat_jax's train step for a preset's default program.

    python -m benchmarks.throughput [--presets cpu,gpu] [--steps N] [--out FILE.json]

MFU = flops_per_token (6N over block matrices and lm_head, plus attention over each layer's window)
x tokens/s / peak FLOP/s of the detected chip (nominal dense bf16 for known GPUs; on a CPU a measured
fp32 matmul rate). Compile time is reported apart; timing uses block_until_ready on each step. Process CPU
seconds per step are recorded next to wall seconds (on a shared machine the wall time follows the load), and
the report names the git commit and the load average before and after, so before/after files compare.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.report import emit_json, machine
from nanochat_jax.env import get_preset
from nanochat_jax.model import GPT, flops_per_token, num_params
from nanochat_jax.optimizer import build_optimizer
from nanochat_jax.train import make_steps, on_gpu, peak_flops, peak_memory_mb


def measure(preset_name: str, steps: int, warmup: int = 2) -> dict:
  preset = get_preset(preset_name)
  prog = preset.program
  cfg, sch = prog.model, prog.schedule
  dtype = jnp.bfloat16 if on_gpu() else jnp.float32
  graphdef, params = nnx.split(GPT(cfg, rngs=nnx.Rngs(0), dtype=dtype), nnx.Param)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  tx = build_optimizer(params, prog.optim, cfg.d_model, compute_dtype=dtype)
  opt_state = tx.init(params)
  train_step, _ = make_steps(graphdef, tx, jnp.ones(cfg.vocab_size, jnp.int32))
  accum = sch.total_batch_tokens // (sch.device_batch_size * cfg.sequence_len)
  rng = np.random.default_rng(0)
  rows = jax.device_put(rng.integers(0, cfg.vocab_size, (accum, sch.device_batch_size, cfg.sequence_len + 1),
                                     dtype=np.int32))
  scalars = [jnp.float32(1.0), jnp.float32(0.95), jnp.float32(0.1)]
  t0 = time.perf_counter()
  compiled = train_step.lower(params, opt_state, rows, *scalars).compile()
  compile_s = time.perf_counter() - t0
  times, cpu_times = [], []
  for i in range(warmup + steps):
    t0, c0 = time.perf_counter(), time.process_time()
    params, opt_state, loss = compiled(params, opt_state, rows, *scalars)
    jax.block_until_ready(loss)
    if i >= warmup:
      times.append(time.perf_counter() - t0)
      cpu_times.append(time.process_time() - c0)
  step_s = float(np.median(times))
  tok_s = sch.total_batch_tokens / step_s
  peak = peak_flops()
  return {"preset": preset_name, "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
          "num_params_M": n_params / 1e6, "tokens_per_step": sch.total_batch_tokens, "step_seconds": step_s,
          "step_cpu_seconds": float(np.median(cpu_times)),
          "tokens_per_second": tok_s, "flops_per_token": flops_per_token(cfg), "peak_flops": peak,
          "peak_is_measured": not on_gpu(), "mfu_percent": 100 * flops_per_token(cfg) * tok_s / peak,
          "compile_seconds": compile_s, "peak_memory_mb": peak_memory_mb(), "steps_timed": steps}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
  p.add_argument("--presets", default=None, help="comma-separated (default: gpu,cpu on a GPU; cpu otherwise)")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--out", help="also write the JSON here")
  args = p.parse_args(argv)
  presets = (args.presets or ("gpu,cpu" if on_gpu() else "cpu")).split(",")
  report = {"machine": machine(), "results": [measure(name, args.steps) for name in presets],
            "load_average_after": list(os.getloadavg())}
  emit_json(report, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
