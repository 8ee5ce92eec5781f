"""Fits a warm-start portfolio (`arrl.portfolio`) on NAS-Bench-Graph training tables.

    python -m arrl.fit_portfolio --out runs/portfolio.json [--datasets cs,physics,photo,computers,arxiv] [--k 3]
    python -m arrl.fit_portfolio --ship-to DIR     # beside the network in DIR (`arrl.pretrain --ship-to`), on its card

The candidates are the architectures of the tables (one encoding of each, up to isomorphism); a candidate's
regret on a table is meta-training's normalised regret (0 at the table's best validation accuracy, 1 at its
median). cora, citeseer and pubmed are held out: asking for them is an error. proteins was run with 5 of the 9
operations, so it is not a default table (a program with another operation gains it nothing). The file records
the command, the tables and each program's regret on each of them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from arrl.portfolio import PORTFOLIO_FILE, Portfolio, greedy
from arrl.ppo.checkpoint import file_sha256, load_card, write_card
from arrl.ppo.tasks import HELD_OUT, check_dataset, nas_task

NINE_OPS = ("cs", "physics", "photo", "computers", "arxiv")   # the training tables with all nine operations


def candidates() -> list[dict]:
  """One encoding {link, op0..op3} of each NAS-Bench-Graph architecture (nine operations)."""
  from benchmarks.nasbench_graph import NasBenchGraph

  bench = NasBenchGraph("cs")
  out, keys = [], set()
  for params in bench.raw_architectures():
    key = bench.key(params)
    if key in bench.table and key not in keys:
      keys.add(key)
      out.append(params)
  return out


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m arrl.fit_portfolio", description=__doc__.split("\n\n")[0])
  out = p.add_mutually_exclusive_group(required=True)
  out.add_argument("--out", help="the portfolio file to write (.json)")
  out.add_argument("--ship-to", help="a shipped network's directory: writes DIR/portfolio.json (the ppo agent "
                   "starting from that network proposes its programs first) and records it on DIR's model card")
  p.add_argument("--datasets", default=",".join(NINE_OPS),
                 help=f"NAS-Bench-Graph training tables ({', '.join(HELD_OUT)} are held out)")
  p.add_argument("--k", type=int, default=3, help="programs in the portfolio (at most)")
  args = p.parse_args(argv)
  datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
  try:
    if not datasets:
      raise ValueError("--datasets names no table")
    for d in datasets:
      check_dataset(d)
    if args.k < 1:
      raise ValueError(f"--k must be >= 1, got {args.k}")
    card = load_card(args.ship_to) if args.ship_to else None
    if args.ship_to and card is None:
      raise ValueError(f"--ship-to {args.ship_to}: no card.json there (a directory of `arrl.pretrain --ship-to`)")
  except ValueError as e:
    p.error(str(e))
  t0 = time.perf_counter()
  progs = candidates()
  regrets = np.full((len(datasets), len(progs)), np.nan)
  for t, d in enumerate(datasets):
    task = nas_task(d)
    for i, params in enumerate(progs):
      try:
        regrets[t, i] = task.regret(params)
      except (KeyError, ValueError):    # an operation this table was not run with (proteins)
        pass
  chosen = greedy(regrets, args.k)
  meta = {"command": "python -m arrl.fit_portfolio " + " ".join(sys.argv[1:] if argv is None else argv),
          "datasets": list(datasets), "held_out": list(HELD_OUT), "k": args.k, "candidates": len(progs),
          "regrets": [{d: None if np.isnan(regrets[t, i]) else round(float(regrets[t, i]), 4)
                       for t, d in enumerate(datasets)} for i in chosen],
          "seconds": round(time.perf_counter() - t0, 1)}
  path = os.path.join(args.ship_to, PORTFOLIO_FILE) if args.ship_to else args.out
  Portfolio(tuple(progs[i] for i in chosen), meta).save(path)
  if card is not None:
    write_card(args.ship_to, {**card, "portfolio": {
        "file": PORTFOLIO_FILE, "sha256": file_sha256(path), "programs": len(chosen),
        **{k: meta[k] for k in ("command", "datasets", "held_out", "regrets")}}})
  print(f"{len(chosen)} programs from {len(progs):,} candidates on {', '.join(datasets)}; wrote {path}",
        file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
