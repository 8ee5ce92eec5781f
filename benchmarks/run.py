"""Benchmark suites: every registered agent against the baselines, with plots, tables and a JSON of all numbers.

    python -m benchmarks.run --suite quick            # minutes on 2 CPU cores: NAS cora 5 seeds, tiny LM smoke
    python -m benchmarks.run --suite full             # NAS 20 seeds x 3 datasets; LM: cpu preset, 30 s x 40
                                                      # trials x 3 seeds per agent (hours; resumable)
    python -m benchmarks.run --suite full --lm-abort-check   # + the first LM agent with early abort off
    python -m benchmarks.run --suite smoke --out /tmp/b      # seconds: the pipeline end to end (NAS only)

Agents: ppo (when registered in arrl.agents.AGENTS), random, greedy, evolution, tpe, plus the `uniform`
reference on NAS-Bench-Graph. Writes OUT/results.json, OUT/README.md, OUT/nas_<dataset>.png and, with the LM
part, OUT/lm_trials.png, OUT/lm_walltime.png and the run dirs under OUT/lm_runs/.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time

from arrl.agents import AGENTS
from benchmarks import lm, nas, report
from benchmarks.nasbench_graph import DATASETS

BASELINES = ("local", "random", "greedy", "evolution", "tpe")


@dataclasses.dataclass(frozen=True)
class Suite:
  datasets: tuple[str, ...]
  nas_seeds: int
  nas_queries: int
  lm_preset: str | None        # None: no LM part
  lm_budget_s: float = 30.0
  lm_trials: int = 40
  lm_seeds: int = 3
  lm_agents: tuple[str, ...] = ()   # empty: every agent
  lm_abort_check: bool = False


SUITES = {
    "smoke": Suite(("cora",), nas_seeds=2, nas_queries=20, lm_preset=None),
    "quick": Suite(("cora",), nas_seeds=5, nas_queries=150, lm_preset="tiny", lm_budget_s=5.0, lm_trials=3,
                   lm_seeds=1, lm_agents=("evolution",)),
    "full": Suite(("cora", "citeseer", "pubmed"), nas_seeds=20, nas_queries=150, lm_preset="cpu"),
}


def _csv(text: str) -> tuple[str, ...]:
  return tuple(x.strip() for x in text.split(",") if x.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--suite", choices=sorted(SUITES), default="quick")
  p.add_argument("--out", default=os.path.join("benchmarks", "results"), help="output directory")
  p.add_argument("--agents", type=_csv, help="comma-separated agents (default: ppo if registered + baselines)")
  p.add_argument("--datasets", type=_csv, help=f"NAS-Bench-Graph datasets, from: {', '.join(DATASETS)}")
  p.add_argument("--nas-seeds", type=int)
  p.add_argument("--nas-queries", type=int)
  p.add_argument("--no-lm", action="store_true", help="skip the LM search")
  p.add_argument("--merge-from", action="append", default=[],
                 help="an earlier run's OUT (repeatable): its NAS results for agents and datasets not run now join "
                      "this report")
  p.add_argument("--merge-only", action="store_true", help="run nothing: only merge the --merge-from results")
  p.add_argument("--lm-preset", choices=["tiny", "cpu", "gpu"])
  p.add_argument("--lm-budget-s", type=float)
  p.add_argument("--lm-trials", type=int)
  p.add_argument("--lm-seeds", type=int)
  p.add_argument("--lm-agents", type=_csv, help="agents of the LM search (default: the suite's, else --agents)")
  p.add_argument("--lm-abort-check", action="store_true", default=None,
                 help="also run the first LM agent with early abort off and replay the abort policy on it")
  args = p.parse_args(argv)
  for name in ("nas_seeds", "nas_queries", "lm_trials", "lm_seeds"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1")
  if args.lm_budget_s is not None and args.lm_budget_s <= 0:
    p.error("--lm-budget-s must be > 0")
  for agent in args.agents or ():
    if agent not in AGENTS and agent != nas.UNIFORM and agent not in nas.VARIANTS:
      p.error(f"unknown agent {agent!r}; registered: {', '.join(sorted(AGENTS))} (and {nas.UNIFORM!r}, "
              f"{', '.join(nas.VARIANTS)} for NAS)")
  for agent in args.lm_agents or ():
    if agent not in AGENTS:
      p.error(f"unknown LM agent {agent!r}; registered: {', '.join(sorted(AGENTS))}")
  for d in args.datasets or ():
    if d not in DATASETS:
      p.error(f"unknown dataset {d!r}; choose from: {', '.join(DATASETS)}")
  return args


def configure(args: argparse.Namespace) -> tuple[Suite, list[str], list[str]]:
  """The suite with the command line's overrides, the agents, and notes on what was left out."""
  suite = SUITES[args.suite]
  overrides = {k: getattr(args, k) for k in ("datasets", "nas_seeds", "nas_queries", "lm_preset", "lm_budget_s",
                                            "lm_trials", "lm_seeds", "lm_agents") if getattr(args, k) is not None}
  if args.lm_abort_check is not None:
    overrides["lm_abort_check"] = True
  if args.no_lm:
    overrides["lm_preset"] = None
  suite = dataclasses.replace(suite, **overrides)
  notes = []
  if args.agents:
    agents = list(args.agents)
  else:
    agents = [report.PROJECT_AGENT, "ppo-scratch"] if report.PROJECT_AGENT in AGENTS else []
    if not agents:
      notes.append(f"`{report.PROJECT_AGENT}` is not registered in arrl.agents.AGENTS: benchmarked without it.")
    agents += [*BASELINES, nas.UNIFORM]
  return suite, agents, notes


def merge_nas(results: dict, path: str) -> None:
  """Adds the NAS agents of an earlier results.json (same queries) that this run lacks; their seed counts may
  differ (each summary keeps its runs, and the note says so)."""
  with open(path) as f:
    earlier = json.load(f)
  if earlier["config"]["nas_queries"] != results["config"]["nas_queries"]:
    raise ValueError(f"{path}: ran with another nas_queries than this run; not merged")
  for dataset, res in earlier["nas"].items():
    mine = results["nas"].setdefault(dataset, {**res, "agents": {}})
    for agent, summary in res["agents"].items():
      mine["agents"].setdefault(agent, summary)
  results["agents"] += [a for a in earlier["agents"] if a not in results["agents"]]
  results["notes"].append(f"NAS results of {', '.join(a for a in earlier['agents'])} ({earlier['config']['nas_seeds']} "
                          f"seeds) merged from {path} "
                          f"({earlier['command']}, git {earlier['machine']['git_commit']}, load "
                          f"{earlier['machine']['load_average']}).")


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  suite, agents, notes = configure(args)
  os.makedirs(args.out, exist_ok=True)
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  t0 = time.perf_counter()
  results = {"suite": args.suite, "command": "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None
                                                                                       else argv),
             "config": dataclasses.asdict(suite), "agents": agents, "machine": report.machine(), "notes": notes}
  if args.merge_only:
    suite = dataclasses.replace(suite, lm_preset=None)
    results["config"], results["agents"] = dataclasses.asdict(suite), []
  results["nas"] = {} if args.merge_only else nas.run_nas(list(suite.datasets), agents, suite.nas_seeds,
                                                          suite.nas_queries, log)
  for earlier in args.merge_from:
    merge_nas(results, os.path.join(earlier, "results.json"))
  for dataset, res in results["nas"].items():
    report.plot_nas(dataset, res, os.path.join(args.out, f"nas_{dataset}.png"))
  if suite.lm_preset is None:
    results["lm_note"] = "Skipped in this run (the quick and full suites run it unless `--no-lm`)."
  else:
    lm_agents = list(suite.lm_agents) or [a for a in agents if a != nas.UNIFORM]
    results["lm"] = lm.run_lm(args.out, suite.lm_preset, suite.lm_budget_s, suite.lm_trials, suite.lm_seeds,
                              lm_agents, suite.lm_abort_check, log)
    report.plot_lm(results["lm"], os.path.join(args.out, "lm_trials.png"), os.path.join(args.out, "lm_walltime.png"))
  results["seconds"] = time.perf_counter() - t0
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(results, f, separators=(",", ":"))  # compact: per-seed curves make it large
  with open(os.path.join(args.out, "README.md"), "w") as f:
    f.write(report.markdown(results))
  log(f"wrote {args.out}/README.md and results.json in {results['seconds']:.0f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
