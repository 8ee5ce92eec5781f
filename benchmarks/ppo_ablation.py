"""Which parts of the PPO agent matter on NAS-Bench-Graph: the default agent against one change at a time.

    python -m benchmarks.ppo_ablation [--dataset cora] [--seeds 20] [--queries 150] [--out DIR]
    python -m benchmarks.ppo_ablation --init "synthetic only=runs/pt_synth/ship"   # + a network from arrl.pretrain

Variants (each is `arrl.search(..., agent="ppo", agent_kwargs=...)`, same seeds as the main table):
  default                 the shipped meta-trained network (arrl/ppo/pretrained) + within-run PPO updates
  no pretraining          init_from="none": a fresh network, within-run PPO only (the agent before meta-training)
  no within-run updates   update_every=0: the meta-trained network as shipped, never updated during the run
  reward clip             squash="clip" on top of the default
  each --init NAME=DIR    the network of `python -m arrl.pretrain --ship-to DIR` (e.g. trained on one source only)

Writes DIR/ppo_ablation.json and DIR/ppo_ablation.md (the markdown table of benchmarks.report, one row a
variant). s/run depends on the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from benchmarks import nas, report
from benchmarks.nasbench_graph import DATASETS, NasBenchGraph

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no pretraining": {"init_from": "none"},
    "no within-run updates": {"update_every": 0},
    "reward clip": {"squash": "clip"},
}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.ppo_ablation", description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", default="cora", choices=DATASETS)
  p.add_argument("--seeds", type=int, default=20)
  p.add_argument("--queries", type=int, default=150)
  p.add_argument("--out", default=os.path.join("benchmarks", "results"))
  p.add_argument("--init", action="append", default=[], metavar="NAME=DIR", help="extra variant: a pretrained network")
  p.add_argument("--only", help="comma-separated variant names to run (default: all)")
  args = p.parse_args(argv)
  if args.seeds < 2 or args.queries < 1:
    p.error("--seeds must be >= 2 (for an interval) and --queries >= 1")
  variants = {**VARIANTS, **nas.init_variants(args.init, p.error)}
  if args.only:
    unknown = sorted(set(args.only.split(",")) - set(variants))
    if unknown:
      p.error(f"--only: unknown variant(s) {', '.join(unknown)}; known: {', '.join(variants)}")
    variants = {k: v for k, v in variants.items() if k in args.only.split(",")}
  bench = NasBenchGraph(args.dataset)
  summaries = {}
  for name, kwargs in variants.items():
    runs = []
    for seed in range(args.seeds):
      runs.append(nas.run_agent(bench, "ppo", seed, args.queries, kwargs))
      print(f"{name} seed {seed}: valid regret {runs[-1]['valid_regret'][-1]:.2f} pp, "
            f"test regret {runs[-1]['regret'][-1]:.2f} pp ({runs[-1]['seconds']:.1f} s)", file=sys.stderr, flush=True)
    summaries[name] = nas.summarize(runs, args.queries)
  result = {"dataset": args.dataset, "seeds": args.seeds, "queries": args.queries, "variants": variants,
            "machine": report.machine(), "agents": summaries}
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "ppo_ablation.json"), "w") as f:
    json.dump(result, f, separators=(",", ":"))
  lines = [f"# PPO ablation on NAS-Bench-Graph {args.dataset}", "",
           f"`python -m benchmarks.ppo_ablation --dataset {args.dataset} --seeds {args.seeds} --queries "
           f"{args.queries}` on {result['machine']['cpu']} ({result['machine']['cores']} cores), "
           f"{result['machine']['date']}, git {result['machine']['git_commit']}.", "",
           "Test regret (pp) of the best-validation selection after N queries, mean [95% t-interval] over seeds; "
           "the validation regret is the objective the agent minimises. Rows: one change to the default agent "
           "each (see the module docstring).", "", *report.nas_table(result), ""]
  with open(os.path.join(args.out, "ppo_ablation.md"), "w") as f:
    f.write("\n".join(lines))
  print(f"wrote {args.out}/ppo_ablation.md", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
