"""Seed spread of a preset's default program: val_bpb over seeds, on the budget clock or at a fixed step count.

    python -m benchmarks.seed_spread --seeds 6                  # the preset's budget on its clock (CPU time on CPU)
    python -m benchmarks.seed_spread --seeds 6 --steps 256      # exactly 256 steps: what the seed alone leaves
    python -m benchmarks.seed_spread --seeds 6 --steps 256 --vary data   # only the data order varies (init seed 0)
    python -m benchmarks.seed_spread --seeds 6 --set schedule.device_batch_size=4 --set schedule.total_batch_tokens=1024

`--steps N` charges every step budget / N (in place of the preset's clock, the way the flops clock charges a
step its FLOPs: `nanochat_jax.env.step_cost_s`), so every run makes exactly N optimizer steps with the same
LR/momentum/weight-decay schedule, whatever the machine does.
`--vary init|data` keeps the other one at seed 0 (`nanochat_jax.train.train(data_seed=)`), which splits the
seed's spread into its initialisation and data-order shares. `--set SECTION.FIELD=VALUE` changes the program
(to compare candidate presets). Each run prints one JSON line (seeds, steps, val_bpb, training wall seconds,
load average); the last line is the summary; `--out FILE` also writes all of it as JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os

import numpy as np

from nanochat_jax import train as train_lib
from nanochat_jax.cache import enable_jax_cache
from nanochat_jax.config import Program
from nanochat_jax.env import get_preset


def fixed_step_cost(budget_s: float, steps: int):
  """A `step_cost_s` under which the training loop stops after exactly `steps` steps of budget / steps each."""
  return lambda preset, backend, step_flops: budget_s / steps


def with_settings(program: Program, settings: list[str]) -> Program:
  """`program` with every `SECTION.FIELD=VALUE` applied (VALUE parsed as JSON, else kept as a string)."""
  for item in settings:
    path, sep, text = item.partition("=")
    section, _, field = path.partition(".")
    if not sep or not hasattr(program, section) or field not in {f.name for f in
                                                                 dataclasses.fields(getattr(program, section))}:
      raise SystemExit(f"error: --set {item!r}: expected SECTION.FIELD=VALUE with a field of the program")
    try:
      value = json.loads(text)
    except json.JSONDecodeError:
      value = text
    program = program.replace(**{section: dataclasses.replace(getattr(program, section), **{field: value})})
  program.validate()
  return program


def seeds_of(vary: str, i: int) -> tuple[int, int]:
  """(initialisation seed, data-order seed) of run i."""
  return (i if vary != "data" else 0), (i if vary != "init" else 0)


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--preset", default="cpu", choices=["cpu", "tiny", "gpu"])
  p.add_argument("--seeds", type=int, default=6)
  p.add_argument("--first-seed", type=int, default=0)
  p.add_argument("--steps", type=int, help="a fixed step count instead of the budget clock")
  p.add_argument("--vary", default="both", choices=["both", "init", "data"])
  p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
  p.add_argument("--out", help="write the runs and the summary to this JSON file")
  args = p.parse_args(argv)
  preset = get_preset(args.preset)
  if args.steps:
    train_lib.step_cost_s = fixed_step_cost(preset.budget_s, args.steps)
  program = with_settings(preset.program, args.set)
  data = train_lib.load_run_data(preset, None, None, None)
  enable_jax_cache()
  runs = []
  for i in range(args.first_seed, args.first_seed + args.seeds):
    seed, data_seed = seeds_of(args.vary, i)
    r = train_lib.train(program, preset, data, seed=seed, data_seed=data_seed, log=lambda s: None)
    runs.append({"seed": seed, "data_seed": data_seed, "steps": r.num_steps, "val_bpb": r.val_bpb,
                 "training_seconds": round(r.training_seconds, 1),
                 "training_wall_seconds": round(r.training_wall_seconds, 1), "load": round(os.getloadavg()[0], 2),
                 "env_digest": r.env_digest})
    print(json.dumps(runs[-1]), flush=True)
  scores = [r["val_bpb"] for r in runs]
  summary = {"preset": preset.name, "settings": args.set, "vary": args.vary, "steps": args.steps or "budget clock",
             "seeds": args.seeds, "mean": float(np.mean(scores)),
             "sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else None}
  print(json.dumps(summary))
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"summary": summary, "runs": runs}, f, indent=1)


if __name__ == "__main__":
  main()
