"""Agents on a fresh batch of synthetic tasks from the meta-training prior (`arrl.ppo.tasks.synthetic`), drawn
with seeds that neither meta-training nor its validation use.

    python -m benchmarks.synthetic [--tasks 16] [--queries 100] [--agents ppo,ppo-scratch,local,...] [--out DIR]
    python -m benchmarks.synthetic --agents ppo-frozen,ppo-fresh-frozen --init new=DIR   # networks, frozen
    python -m benchmarks.synthetic --batch 2 --agents ppo-frozen --init new=DIR --paired ppo-frozen

    python -m benchmarks.synthetic --nas-train --seeds 8 --queries 150 --agents "" --init a=DIR --init b=DIR2 --paired b
    python -m benchmarks.synthetic --nas-train --batch 3 --agents "" --init a=DIR --hash-shuffle --paired a

A batch of tasks decides something once: `--batch K` draws another batch (K=1 chose the networks shipped in
meta2 and meta3, K=2 the one of meta4). `--paired AGENT` adds every agent's paired difference to AGENT's mean
regret over the run, over the tasks.

`--nas-train [D1,D2,...]` runs on the NAS-Bench-Graph training tables instead (all of `arrl.ppo.tasks.NAS_TRAIN`
by default; the held-out ones are refused): a task is (dataset, agent seed), `--seeds` per dataset, with agent
seeds SEED_BASE + 1000 (K - 1) + k for k < --seeds in batch K: plain integers, which meta-training (its episodes
draw from [seed, iteration, env]) and its NAS validation ([seed, 10**6 + 1, j]) never use. Regret is normalised
as in meta-training (`nas_task`: 0 at the table's best validation accuracy, 1 at its median). Writes
DIR/nas_train.json and DIR/nas_train.md, with each agent's mean over the run per dataset and, per network, the
tables run here that its model card says it was meta-trained on (`trained_on`: it can score what it memorised there).

`--hash-shuffle` also runs every `--init` network as NAME+shuffled, its hash rows relabelled by a permutation
drawn per run (`hash_shuffle`): a network that leans on what it learned of particular strings (a field or value
of a space it was trained on) loses that, one that reads the numbers and the within-run identities does not.

Each task is searched once per agent (agent seed = task index) through `arrl.search` with noise_repeats=1 and
false_keep=0.5 (margin 0), as on NAS-Bench-Graph. The score is the normalised regret of the kept best's noise-free value (0 at
the optimum, ~1 for a typical random program; `Task.regret`). Writes DIR/synthetic.json and DIR/synthetic.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import arrl.search
from arrl.agents import SHIPPED_NETWORK, portfolio_file
from arrl.portfolio import Portfolio
from arrl.ppo.checkpoint import load_card, pretrained_dir
from arrl.ppo.tasks import NAS_TRAIN, Task, check_dataset, nas_task, synthetic
from benchmarks import report
from benchmarks.nas import CHECKPOINTS, VARIANTS, init_variants
from benchmarks.stats import mean_ci

SEED_BASE = 7_777_777   # batch K's task seeds: [SEED_BASE + K - 1, i] (meta-training draws from [seed, iteration]
                        # and [seed, 10**6] with seeds far below SEED_BASE)
AGENTS = ("ppo", "ppo-scratch", "local", "greedy", "evolution", "tpe", "random", "uniform")


def regret_curve(task, trials, queries: int) -> list[float]:
  """Regret of the best measured program (by observed score) after each of `queries` evaluated trials."""
  out, best, best_params = [], None, None
  for t in (t for t in trials if not t.cached):
    if t.score is not None and (best is None or t.score < best):
      best, best_params = t.score, t.params
    out.append(task.regret(best_params) if best_params is not None else 2.0)
  return (out + [out[-1]] * queries)[:queries]


def interval(x: np.ndarray) -> dict[str, float]:
  """Mean over tasks and its 95% interval."""
  (m,), (lo,), (hi,) = mean_ci(np.asarray(x)[:, None])
  return {"mean": float(m), "lo": float(lo), "hi": float(hi)}


def tasks(batch: int, n: int) -> list:
  return [synthetic(np.random.default_rng([SEED_BASE + batch - 1, i]), f"heldout{i}") for i in range(n)]


def nas_runs(datasets: list[str], seeds: int, batch: int) -> list[tuple[str, Task, int]]:
  """(dataset, its task, agent seed) for `seeds` agent seeds per NAS-Bench-Graph training dataset."""
  out = []
  for d in datasets:
    task = nas_task(d)   # refuses held-out datasets
    out += [(d, task, SEED_BASE + 1000 * (batch - 1) + k) for k in range(seeds)]
  return out


def trained_tables(agent: str, options: dict) -> list[str]:
  """The NAS-Bench-Graph tables a ppo agent's network was meta-trained on (its model card) or the agent's
  warm-start portfolio was fitted on ([] for a fresh network without a portfolio, or another agent without one).
  On such a table its score includes what it memorised there, so it is no fair opponent there for an agent that
  never saw it."""
  tables: list[str] = []
  init_from = options.get("init_from", SHIPPED_NETWORK)
  source = pretrained_dir(init_from)
  if agent == "ppo" and source is not None:
    card = load_card(source) or {}
    tables += card.get("nas_datasets", []) if "nas" in card.get("data", []) else []
  path = portfolio_file(agent, options.get("warm_start"), init_from)
  if path is not None:
    tables += [d for d in Portfolio.load(path).meta.get("datasets", []) if d not in tables]
  return tables


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.synthetic", description=__doc__.split("\n\n")[0])
  p.add_argument("--tasks", type=int, default=16)
  p.add_argument("--queries", type=int, default=100)
  p.add_argument("--agents", default=",".join(AGENTS))
  p.add_argument("--out", default=os.path.join("benchmarks", "results"))
  p.add_argument("--init", action="append", default=[], metavar="NAME=DIR",
                 help="extra agent NAME: the network of `arrl.pretrain --ship-to DIR`, frozen (update_every=0)")
  p.add_argument("--batch", type=int, default=1, help="batch of tasks K: seeds [SEED_BASE + K - 1, task]")
  p.add_argument("--paired", metavar="AGENT", help="paired differences of the mean regret over the run to AGENT's")
  p.add_argument("--nas-train", nargs="?", const=",".join(NAS_TRAIN), metavar="D1,D2",
                 help=f"run on NAS-Bench-Graph training datasets (default all: {','.join(NAS_TRAIN)}) instead")
  p.add_argument("--seeds", type=int, default=8, help="agent seeds per dataset with --nas-train")
  p.add_argument("--hash-shuffle", action="store_true",
                 help="also run each --init network as NAME+shuffled: hash rows relabelled per run (ppo hash_shuffle)")
  args = p.parse_args(argv)
  if args.tasks < 2 or args.queries < 2 or args.batch < 1 or args.seeds < 1:
    p.error("--tasks and --queries must be >= 2, --batch and --seeds >= 1")
  if args.nas_train is None:
    runs = [("synthetic", task, i) for i, task in enumerate(tasks(args.batch, args.tasks))]
  else:
    datasets = [d.strip() for d in args.nas_train.split(",") if d.strip()]
    for d in datasets:
      try:
        check_dataset(d)
      except ValueError as e:
        p.error(f"--nas-train: {e}")
    runs = nas_runs(datasets, args.seeds, args.batch)
  n = len(runs)
  networks = {name: ("ppo", {**opts, "update_every": 0}) for name, opts in init_variants(args.init, p.error).items()}
  if args.hash_shuffle:
    networks.update({f"{name}+shuffled": ("ppo", {**opts, "hash_shuffle": True}) for name, (_, opts) in list(networks.items())})
  agents = [a.strip() for a in args.agents.split(",") if a.strip()] + list(networks)
  if args.paired is not None and args.paired not in agents:
    p.error(f"--paired {args.paired!r} is not one of the agents run ({', '.join(agents)})")
  summary = {}
  for agent in agents:
    name, options = {**VARIANTS, **networks}.get(agent, (agent, {}))
    curves, t0 = [], time.perf_counter()
    for _, task, seed in runs:
      res = arrl.search.search(task.space, task.objective, agent=name, max_trials=args.queries, seed=seed,
                               noise_repeats=1, false_keep=0.5, agent_kwargs=options)
      curves.append(regret_curve(task, res.trials, args.queries))
    mean, lo, hi = mean_ci(np.array(curves))
    at = {str(q): {"mean": float(mean[q - 1]), "lo": float(lo[q - 1]), "hi": float(hi[q - 1])}
          for q in [*(c for c in CHECKPOINTS if c < args.queries), args.queries]}
    run_means = np.mean(curves, axis=1)
    summary[agent] = {"at": at, "run_mean": interval(run_means), "trained_on": trained_tables(name, options),
                      "per_dataset": {d: float(run_means[[r[0] == d for r in runs]].mean()) for d, _, _ in runs},
                      "seconds_per_run": (time.perf_counter() - t0) / n, "curves": curves}
    print(f"{agent}: " + ", ".join(f"@{q} {v['mean']:.3f}" for q, v in at.items()), file=sys.stderr, flush=True)
  result = {"tasks": n, "queries": args.queries, "batch": args.batch, "machine": report.machine(),
            "runs": [{"dataset": d, "seed": seed} for d, _, seed in runs], "agents": summary}
  os.makedirs(args.out, exist_ok=True)
  stem = "synthetic" if args.nas_train is None else "nas_train"
  command = (f"--tasks {args.tasks} --batch {args.batch}" if args.nas_train is None else
             f"--nas-train {args.nas_train} --seeds {args.seeds} --batch {args.batch}")
  qs = list(next(iter(summary.values()))["at"])
  lines = ["# Held-out synthetic tasks" if args.nas_train is None else "# NAS-Bench-Graph training datasets", "",
           f"`python -m benchmarks.synthetic {command} --queries {args.queries}` on "
           f"{result['machine']['cpu']}, {result['machine']['date']}, git {result['machine']['git_commit']}, load "
           f"{result['machine']['load_average']}.", "",
           "Normalised regret of the best program found after N queries (0 = optimum, ~1 = a typical random program), "
           f"mean [95% t-interval] over {n} {'tasks' if args.nas_train is None else '(dataset, agent seed) runs'}.", "",
           "| agent | " + " | ".join(f"{q} queries" for q in qs) + " | mean over the run | s/run |",
           "|---|" + "---|" * (len(qs) + 2)]
  cell = lambda v: f"{v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"
  order = sorted(summary, key=lambda a: summary[a]["run_mean"]["mean"])
  for agent in order:
    s = summary[agent]
    lines.append(f"| {agent} | " + " | ".join(cell(s["at"][q]) for q in qs) +
                 f" | {cell(s['run_mean'])} | {s['seconds_per_run']:.1f} |")
  if args.nas_train is not None:
    ds = list(summary[order[0]]["per_dataset"])
    lines += ["", "Mean over the run per dataset:", "", "| agent | " + " | ".join(ds) + " |", "|---|" + "---|" * len(ds)]
    lines += [f"| {a} | " + " | ".join(f"{summary[a]['per_dataset'][d]:.3f}" for d in ds) + " |" for a in order]
    seen = {a: [d for d in ds if d in summary[a]["trained_on"]] for a in order}
    if any(seen.values()):
      lines += ["", "Meta-trained on these tables (network or warm-start portfolio; model cards, portfolio files): "
                + "; ".join(f"{a}: {', '.join(t)}" for a, t in seen.items() if t) + ". On a table it trained on, an "
                "agent's score includes what it memorised of that table: compare agents on tables none of them "
                "trained on."]
  if args.paired is not None:
    ref = np.mean(summary[args.paired]["curves"], axis=1)
    lines += ["", f"Paired over the {n} tasks: mean regret over the run minus {args.paired}'s, mean [95% "
                  "t-interval], and on how many tasks it is lower.", ""]
    for agent in (a for a in summary if a != args.paired):
      d = np.mean(summary[agent]["curves"], axis=1) - ref
      v = summary[agent]["paired"] = {"against": args.paired, **interval(d), "lower_on": int(np.sum(d < 0))}
      lines.append(f"- {agent} - {args.paired}: {v['mean']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}], lower on "
                   f"{v['lower_on']} of {n}")
  with open(os.path.join(args.out, f"{stem}.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(args.out, f"{stem}.json"), "w") as f:
    json.dump(result, f, separators=(",", ":"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
