"""Forward+backward time of nanochat_jax (jitted) against the same GPT in PyTorch eager, side by side.

    pip install torch            # optional: only this benchmark uses PyTorch
    python -m benchmarks.torch_compare [--preset cpu] [--batch B] [--rounds 15] [--cores N] [--out FILE.json]

Both models hold the same fp32 weights (a fresh nanochat_jax init exported with `nanochat_jax.convert`)
and see the same random batch of the preset's micro-batch shape (or `--batch` rows). Rounds alternate
JAX / torch so load changes hit both alike; medians are reported, with the machine's load average before and
after. The losses of the two models must agree (a wrong torch twin would make the comparison meaningless).
Wall and process CPU seconds are both recorded: on a machine shared with other jobs, wall time swings
with the load (torch's OpenMP threads suffer most when cores are oversubscribed), and `--cores 1` with
its CPU seconds gives the comparison least affected by other jobs.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.report import emit_json, machine
from nanochat_jax.config import ModelConfig
from nanochat_jax.convert import from_torch_state_dict, to_torch_state_dict
from nanochat_jax.env import get_preset
from nanochat_jax.model import GPT, per_token_loss


def torch_loss_fn(cfg: ModelConfig):
  """autoresearch's GPT forward + mean cross-entropy in torch (fp32 eager), over autoresearch's state_dict names."""
  import torch
  import torch.nn.functional as F

  n_head, n_kv, hd, t = cfg.n_head, cfg.n_kv, cfg.head_dim, cfg.sequence_len
  inv_freq = 1.0 / cfg.rope_base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
  freqs = torch.outer(torch.arange(t, dtype=torch.float32), inv_freq)
  cos, sin = freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]
  eps = torch.finfo(torch.float32).eps
  qi, ki = torch.arange(t)[:, None], torch.arange(t)[None, :]
  masks = {w: (ki <= qi) & (qi - ki <= w) for w in set(cfg.window_sizes()) if w < t}  # True = attend

  def norm(x):
    return F.rms_norm(x, (x.size(-1),), eps=eps)

  def rotary(x):
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)

  def loss(sd: dict, idx, targets):
    b = idx.size(0)
    x = norm(F.embedding(idx, sd["transformer.wte.weight"]))
    x0 = x
    for i, window in enumerate(cfg.window_sizes()):
      p = f"transformer.h.{i}"
      x = sd["resid_lambdas"][i] * x + sd["x0_lambdas"][i] * x0
      h = norm(x)
      q = F.linear(h, sd[f"{p}.attn.c_q.weight"]).view(b, t, n_head, hd)
      k = F.linear(h, sd[f"{p}.attn.c_k.weight"]).view(b, t, n_kv, hd)
      v = F.linear(h, sd[f"{p}.attn.c_v.weight"]).view(b, t, n_kv, hd)
      if f"value_embeds.{i}.weight" in sd:
        ve = F.embedding(idx, sd[f"value_embeds.{i}.weight"]).view(b, t, n_kv, hd)
        gate = 2 * torch.sigmoid(F.linear(h[..., :cfg.ve_gate_channels], sd[f"{p}.attn.ve_gate.weight"]))
        v = v + gate.unsqueeze(-1) * ve
      q, k = norm(rotary(q)), norm(rotary(k))
      q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
      if window < t:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=masks[window], enable_gqa=n_kv < n_head)
      else:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=n_kv < n_head)
      x = x + F.linear(y.transpose(1, 2).reshape(b, t, -1), sd[f"{p}.attn.c_proj.weight"])
      x = x + F.linear(F.relu(F.linear(norm(x), sd[f"{p}.mlp.c_fc.weight"])).square(), sd[f"{p}.mlp.c_proj.weight"])
    logits = F.linear(norm(x), sd["lm_head.weight"])
    if cfg.softcap > 0:
      logits = cfg.softcap * torch.tanh(logits / cfg.softcap)
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)

  return loss


def compare(preset_name: str, rounds: int, batch: int | None = None, warmup: int = 2) -> dict:
  import torch

  prog = get_preset(preset_name).program
  cfg, batch = prog.model, batch or prog.schedule.device_batch_size
  model = nnx.jit(lambda: GPT(cfg, rngs=nnx.Rngs(0)))()
  # Random non-zero output projections: a fresh init zeroes them, which would hide most of the blocks' work.
  rng = np.random.default_rng(0)
  sd = {k: (v if v.any() else rng.standard_normal(v.shape).astype(np.float32) / math.sqrt(v.shape[-1]))
        for k, v in to_torch_state_dict(model).items()}
  graphdef, params = nnx.split(from_torch_state_dict(sd, cfg), nnx.Param)
  rows = rng.integers(0, cfg.vocab_size, (batch, cfg.sequence_len + 1), dtype=np.int32)

  def jax_loss(params, rows_BxT1):
    logits = nnx.merge(graphdef, params)(rows_BxT1[:, :-1])
    return jnp.mean(per_token_loss(logits, rows_BxT1[:, 1:]))

  jax_step = jax.jit(jax.value_and_grad(jax_loss))
  jax_rows = jax.device_put(rows)
  t_sd = {k: torch.tensor(v, requires_grad=True) for k, v in sd.items()}
  t_idx, t_tgt = torch.tensor(rows[:, :-1], dtype=torch.long), torch.tensor(rows[:, 1:], dtype=torch.long)
  t_loss = torch_loss_fn(cfg)

  def run_jax() -> float:
    loss, grads = jax_step(params, jax_rows)
    jax.block_until_ready(grads)
    return float(loss)

  def run_torch() -> float:
    for p in t_sd.values():
      p.grad = None
    loss = t_loss(t_sd, t_idx, t_tgt)
    loss.backward()
    return loss.item()

  load_before = os.getloadavg()
  t0 = time.perf_counter()
  loss_jax = run_jax()
  compile_s = time.perf_counter() - t0
  loss_torch = run_torch()
  if abs(loss_jax - loss_torch) > 1e-3 * abs(loss_torch):
    raise RuntimeError(f"torch twin disagrees with nanochat_jax: loss {loss_torch} vs {loss_jax}")
  wall: dict[str, list[float]] = {"jax": [], "torch": []}
  cpu: dict[str, list[float]] = {"jax": [], "torch": []}
  for r in range(warmup + rounds):
    for name, fn in (("jax", run_jax), ("torch", run_torch)):
      w0, c0 = time.perf_counter(), time.process_time()
      fn()
      if r >= warmup:
        wall[name].append(time.perf_counter() - w0)
        cpu[name].append(time.process_time() - c0)
  med = {f"{k}_{kind}": float(np.median(v)) for kind, d in (("wall", wall), ("cpu", cpu)) for k, v in d.items()}
  return {"preset": preset_name, "batch": batch, "seq_len": cfg.sequence_len, "d_model": cfg.d_model,
          "depth": cfg.depth, "vocab": cfg.vocab_size, "loss_jax": loss_jax, "loss_torch": loss_torch,
          "jax_compile_seconds": compile_s, "median_fwd_bwd_s": med,
          "ratio_jax_over_torch_wall": med["jax_wall"] / med["torch_wall"],
          "ratio_jax_over_torch_cpu": med["jax_cpu"] / med["torch_cpu"], "rounds": rounds,
          "wall_s": wall, "cpu_s": cpu, "torch_threads": torch.get_num_threads(),
          "cores": sorted(os.sched_getaffinity(0)), "load_average_before": load_before,
          "load_average_after": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.torch_compare", description=__doc__.split("\n\n")[0])
  p.add_argument("--preset", default="cpu")
  p.add_argument("--rounds", type=int, default=15)
  p.add_argument("--batch", type=int, help="rows per forward+backward (default: the preset's device_batch_size)")
  p.add_argument("--cores", type=int, default=0,
                 help="run on this many cores, torch with as many threads (default 0: all cores, default threads)")
  p.add_argument("--out", help="also write the JSON here")
  args = p.parse_args(argv)
  try:
    import torch
  except ImportError:
    print("benchmarks.torch_compare: PyTorch is not installed (pip install torch)", file=sys.stderr)
    return 2
  if args.cores:  # XLA has no working thread-count flag here, so pin the process (both frameworks) instead
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
    torch.set_num_threads(args.cores)
  report = {"machine": machine() | {"torch": torch.__version__},
            "result": compare(args.preset, args.rounds, args.batch)}
  emit_json(report, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
