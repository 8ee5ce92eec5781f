"""Seed spread of a preset's default program: val_bpb over seeds, on the budget clock or at a fixed step count.

    python -m benchmarks.seed_spread --seeds 6                  # the preset's budget on its clock (CPU time on CPU)
    python -m benchmarks.seed_spread --seeds 6 --steps 256      # exactly 256 steps: what the seed alone leaves

`--steps N` replaces the budget clock with one that advances budget / N per reading, so every run makes
exactly N optimizer steps with the same LR/momentum/weight-decay schedule, whatever the machine does. Each run
prints one JSON line (seed, steps, val_bpb, training wall seconds, load average); the last line is the summary.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os

import numpy as np

from nanochat_jax import train as train_lib
from nanochat_jax.cache import enable_jax_cache
from nanochat_jax.env import get_preset


def fixed_step_clock(budget_s: float, steps: int):
  """A budget clock under which the training loop stops after exactly `steps` steps (two readings per step)."""
  ticks = itertools.count()
  return lambda backend: (lambda: next(ticks) * budget_s / steps)


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--preset", default="cpu", choices=["cpu", "tiny", "gpu"])
  p.add_argument("--seeds", type=int, default=6)
  p.add_argument("--steps", type=int, help="a fixed step count instead of the budget clock")
  args = p.parse_args(argv)
  preset = get_preset(args.preset)
  data = train_lib.load_run_data(preset, None, None, None)
  enable_jax_cache()
  scores = []
  for seed in range(args.seeds):
    if args.steps:
      train_lib.budget_clock = fixed_step_clock(preset.budget_s, args.steps)
    r = train_lib.train(preset.program, preset, data, seed=seed, log=lambda s: None)
    scores.append(r.val_bpb)
    print(json.dumps({"seed": seed, "steps": r.num_steps, "val_bpb": r.val_bpb,
                      "training_wall_seconds": round(r.training_wall_seconds, 1),
                      "load": round(os.getloadavg()[0], 2)}), flush=True)
  print(json.dumps({"preset": preset.name, "steps": args.steps or "budget clock", "seeds": args.seeds,
                    "mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else None}))


if __name__ == "__main__":
  main()
