"""Fits the neighbour scorer a network with NetConfig.neighbour_guide follows (`arrl.ppo.neighbours`).

    python -m arrl.fit_scorer --out runs/scorer.npz                       # NAS training tables + synthetic tasks
    python -m arrl.pretrain --out runs/ng --neighbour-scorer runs/scorer.npz  # a network that follows it

Rows come from hill-climbing runs on training tasks (a uniformly random fresh neighbour of the kept best is
measured; `neighbours.collect`): every fresh neighbour of every step, its numbers and the improvement it makes on
the kept best (only meta-training knows it). cora, citeseer and pubmed are held out: asking for them is an error.
A part of the runs (`--valid-share`) is kept out of the fit; the file records its error next to the error of
predicting their mean, with the command, the tasks, the seed and the row counts.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from arrl.ppo import neighbours
from arrl.ppo.tasks import HELD_OUT, NAS_TRAIN, check_dataset, nas_task, synthetic


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m arrl.fit_scorer", description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True, help="the scorer file to write (.npz)")
  p.add_argument("--datasets", default=",".join(NAS_TRAIN),
                 help=f"NAS-Bench-Graph training tables ('' for none; {', '.join(HELD_OUT)} are held out)")
  p.add_argument("--nas-runs", type=int, default=16, help="runs per NAS table")
  p.add_argument("--synthetic", type=int, default=200, help="synthetic tasks (one run each)")
  p.add_argument("--trials", type=int, default=100, help="trials per run")
  p.add_argument("--steps", type=int, default=3000, help="optimizer steps of the fit")
  p.add_argument("--valid-share", type=float, default=0.2, help="share of the runs kept out of the fit")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
  try:
    for d in datasets:
      check_dataset(d)
    if min(args.nas_runs, args.synthetic) < 0 or args.trials < 10 or args.steps < 1 or not 0 <= args.valid_share < 1:
      raise ValueError("--nas-runs, --synthetic >= 0, --trials >= 10, --steps >= 1 and 0 <= --valid-share < 1 required")
    if not (datasets and args.nas_runs) and not args.synthetic:
      raise ValueError("no runs: give --datasets with --nas-runs >= 1, or --synthetic >= 1")
  except ValueError as e:
    p.error(str(e))
  from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

  t0 = time.perf_counter()
  rng = np.random.default_rng([args.seed, 7])
  tables = {d: nas_task(d) for d in datasets}
  tasks = [tables[d] for d in datasets for _ in range(args.nas_runs)]
  tasks += [synthetic(np.random.default_rng([args.seed, 424242, i]), f"synthetic{i}") for i in range(args.synthetic)]
  seeds = [[args.seed, k] for k in range(len(tasks))]
  held = rng.random(len(tasks)) < args.valid_share
  with Progress(TextColumn("collecting runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                transient=True, disable=not sys.stderr.isatty()) as bar:
    job = bar.add_task("", total=len(tasks))
    parts = {split: neighbours.collect([t for t, h in zip(tasks, held) if h == split], args.trials,
                                       [s for s, h in zip(seeds, held) if h == split],
                                       progress=lambda _: bar.advance(job))
             for split in (False, True)}
  X, Y = parts[False]
  if not len(X):
    p.error("every run was kept out of the fit: lower --valid-share")
  weights = neighbours.fit(X, Y, steps=args.steps, seed=args.seed)
  meta = {"command": "python -m arrl.fit_scorer " + " ".join(sys.argv[1:] if argv is None else argv),
          "datasets": list(datasets), "nas_runs": args.nas_runs, "synthetic": args.synthetic, "trials": args.trials,
          "steps": args.steps, "seed": args.seed, "held_out": list(HELD_OUT), "fit_rows": int(len(X)),
          "target": "max(0, drop in true normalised regret)"}
  Xv, Yv = parts[True]
  if len(Xv):
    meta.update(valid_rows=int(len(Xv)), valid_mse=float(np.mean((neighbours.scores(weights, Xv) - Yv) ** 2)),
                valid_mse_of_mean=float(np.mean((Yv - Y.mean()) ** 2)))
  meta["seconds"] = round(time.perf_counter() - t0, 1)
  neighbours.save_scorer(args.out, weights, meta)
  print(f"{len(X):,} rows fitted" + (f", held-out runs' mse {meta['valid_mse']:.3g} (predicting the mean: "
                                     f"{meta['valid_mse_of_mean']:.3g})" if len(Xv) else "")
        + f" in {meta['seconds']:.0f} s; wrote {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
