"""XLA against cuDNN attention on a preset's attention shapes: forward+backward time and agreement.

    python -m benchmarks.attention_check [--preset gpu] [--batch N] [--steps 10] [--out FILE.json]

For every distinct window of the preset's default program (sliding `S` layers and the full `L` layer), both
implementations of `nanochat_jax.model.causal_attention` run a jitted forward+backward on the same random
q/k/v (bf16 on a GPU, fp32 elsewhere); the report gives median seconds per implementation and the largest
difference of outputs and gradients relative to the largest XLA value. An implementation that cannot run
here (cuDNN off a GPU) is reported with its error instead of times.
"""
from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.report import emit_json, machine
from nanochat_jax.env import get_preset
from nanochat_jax.model import causal_attention
from nanochat_jax.train import on_gpu

IMPLEMENTATIONS = ("xla", "cudnn")


def _fwd_bwd(window: int, implementation: str):
  def loss(q, k, v, cotangent):
    return jnp.sum((causal_attention(q, k, v, window, implementation) * cotangent).astype(jnp.float32))
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def check_window(shape: tuple[int, int, int, int], window: int, dtype: jnp.dtype, steps: int) -> dict:
  q, k, v, cotangent = (jax.random.normal(key, shape, dtype) for key in jax.random.split(jax.random.key(0), 4))
  out: dict = {"window": window}
  values = {}
  for impl in IMPLEMENTATIONS:
    try:
      fn = _fwd_bwd(window, impl)
      t0 = time.perf_counter()
      values[impl] = jax.block_until_ready(fn(q, k, v, cotangent))
      compile_s = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 -- e.g. cuDNN on a CPU: recorded, the other implementation still runs
      out[impl] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
      continue
    times = []
    for _ in range(steps):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(q, k, v, cotangent))
      times.append(time.perf_counter() - t0)
    out[impl] = {"fwd_bwd_median_s": float(np.median(times)), "first_call_s": compile_s}
  if len(values) == len(IMPLEMENTATIONS):
    ref, other = (jax.tree.leaves(values[impl]) for impl in IMPLEMENTATIONS)
    names = ("loss", "dq", "dk", "dv")
    out["max_rel_diff"] = {n: float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)))
                                    / (float(jnp.max(jnp.abs(a.astype(jnp.float32)))) or 1.0))
                           for n, a, b in zip(names, ref, other)}
  return out


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.attention_check", description=__doc__.split("\n\n")[0])
  p.add_argument("--preset", default="gpu")
  p.add_argument("--batch", type=int, help="rows per call (default: the preset program's device_batch_size)")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--out", help="also write the JSON here")
  args = p.parse_args(argv)
  try:
    prog = get_preset(args.preset).program
  except ValueError as e:
    print(f"error: --preset: {e}", file=sys.stderr)
    return 2
  cfg = prog.model
  shape = (args.batch or prog.schedule.device_batch_size, cfg.sequence_len, cfg.n_head, cfg.head_dim)
  dtype = jnp.bfloat16 if on_gpu() else jnp.float32
  report = {"machine": machine(), "preset": args.preset, "shape_BxTxHxK": shape, "dtype": jnp.dtype(dtype).name,
            "layers_per_window": {str(w): cfg.window_sizes().count(w) for w in sorted(set(cfg.window_sizes()))},
            "windows": [check_window(shape, w, dtype, args.steps) for w in sorted(set(cfg.window_sizes()))]}
  emit_json(report, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
