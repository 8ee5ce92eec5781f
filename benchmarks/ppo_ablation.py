"""Which parts of the PPO agent matter on NAS-Bench-Graph: the default agent against one change at a time.

    python -m benchmarks.ppo_ablation [--dataset cora] [--seeds 20] [--queries 150] [--out DIR]

Variants (each is `arrl.search(..., agent="ppo", agent_kwargs=...)`, same seeds as the main table):
  default           symlog rewards, regret prior 4.0, learning on
  reward clip       squash="clip": every trial worse than 5 noise units gets the same reward
  no prior          prior=0.0: the candidates' history verdict starts with no weight in the logits
  frozen network    lr=1e-9: the untrained policy (its prior, masks and stop bias) without learning

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
    "reward clip": {"squash": "clip"},
    "no prior": {"prior": 0.0},
    "frozen network": {"lr": 1e-9},
}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.ppo_ablation", description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", default="cora", choices=DATASETS)
  p.add_argument("--seeds", type=int, default=20)
  p.add_argument("--queries", type=int, default=150)
  p.add_argument("--out", default=os.path.join("benchmarks", "results"))
  args = p.parse_args(argv)
  if args.seeds < 2 or args.queries < 1:
    p.error("--seeds must be >= 2 (for an interval) and --queries >= 1")
  bench = NasBenchGraph(args.dataset)
  summaries = {}
  for name, kwargs in VARIANTS.items():
    runs = []
    for seed in range(args.seeds):
      runs.append(nas.run_agent(bench, "ppo", seed, args.queries, kwargs))
      print(f"{name} seed {seed}: valid regret {runs[-1]['valid_regret'][-1]:.2f} pp, "
            f"test regret {runs[-1]['regret'][-1]:.2f} pp ({runs[-1]['seconds']:.1f} s)", file=sys.stderr, flush=True)
    summaries[name] = nas.summarize(runs, args.queries)
  result = {"dataset": args.dataset, "seeds": args.seeds, "queries": args.queries, "variants": VARIANTS,
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
