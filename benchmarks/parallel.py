"""Parallel trials: throughput against workers per executor, and what asynchronous proposals cost.

    python -m benchmarks.parallel --part throughput [--sleep-s 10 --rounds 3 --workers 1 2 4 8]
    python -m benchmarks.parallel --part async [--seeds 10 --queries 150 --workers 1 4 8]

Throughput: every trial is a real worker process (`python -m arrl.worker`) that sleeps `--sleep-s` seconds
while reporting progress, so the numbers measure the executor's own cost (process start, event
streaming, scheduling) and fit on 2 cores; N dispatcher threads keep N trials in flight, `--rounds` x N
trials per point. Scaling efficiency = (trials/hour with N workers) / (N x trials/hour with 1 worker).
The local executor runs unpinned slots here (sleeping trials need no cores); the Ray executor runs on a
local Ray instance with 8 logical CPUs, one per trial, after warm-up rounds that run until every Ray
worker process has started (Ray starts them lazily, ~1 CPU-second each: a cluster pays that once per run,
not per trial). Each point records how many distinct processes ran its trials (`parents`: the Ray workers).

Async: sample efficiency of the asynchronous loop on NAS-Bench-Graph (cora) with a simulated clock. The
real loop (`SearchLoop.room` / `fill` / `complete`, the code `--workers` runs) proposes into free workers;
each trial takes a simulated uniform(0.5, 1.5) time units, and the trial that ends first (simulated) is
completed next, so the agent sees results in the order N real workers would deliver them, with N - 1
trials still in flight whenever it proposes. Regret (test and validation, pp, as in benchmarks.nas) is
compared at equal numbers of queries, so the cost of parallelism shows directly: with N workers the
same number of queries takes ~1/N of the time.
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import queue
import tempfile
import threading
import time
from typing import Any

import numpy as np

from arrl.agents import make_agent
from arrl.loop import LoopConfig, SearchLoop
from arrl.oracle import Oracle
from arrl.parallel import Slot, SlotExecutor
from arrl.runner import TrialJob, WorkerLimits
from arrl.search import CallableEvaluator
from arrl.trial import TrialRecord
from benchmarks.nas import VARIANTS
from benchmarks.report import machine

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "parallel")
SLEEP_FN = "benchmarks.sleep_trial:sleep_trial"   # a module that imports only os and time


def machine_load() -> str:
  with open("/proc/loadavg") as f:
    return " ".join(f.read().split()[:3])


def throughput_point(executor: Any, workers: int, sleep_s: float, rounds: int) -> dict:
  """Run rounds x workers sleeping trials with `workers` in flight; trials/hour and per-trial overhead."""
  jobs: queue.Queue[TrialJob] = queue.Queue()
  for i in range(rounds * workers):
    jobs.put(TrialJob(trial_id=f"w{workers}-{i}", fn=SLEEP_FN, payload={"sleep_s": sleep_s}, budget_s=sleep_s,
                      compile_cap_s=120.0, eval_allowance_s=60.0))
  results, lock = [], threading.Lock()

  def dispatch() -> None:
    while True:
      try:
        job = jobs.get_nowait()
      except queue.Empty:
        return
      r = executor.run(job)
      with lock:
        results.append(r)

  t0 = time.monotonic()
  threads = [threading.Thread(target=dispatch) for _ in range(workers)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  wall = time.monotonic() - t0
  bad = [r.error for r in results if r.status != "ok"]
  if bad:
    raise RuntimeError(f"{len(bad)} sleeping trials failed: {bad[0]}")
  return {"workers": workers, "trials": len(results), "parents": len({r.summary["parent_pid"] for r in results}),
          "wall_s": round(wall, 2),
          "trials_per_hour": round(3600 * len(results) / wall, 1),
          "mean_overhead_s": round(sum(r.total_seconds for r in results) / len(results) - sleep_s, 3),
          "load_before": machine_load()}


def throughput(kind: str, workers: list[int], sleep_s: float, rounds: int) -> list[dict]:
  limits = WorkerLimits(max_rss_mb=None)
  if kind == "ray":
    from arrl.ray_executor import RayExecutor
    executor: Any = RayExecutor(num_cpus=1, limits=limits, init_kwargs={"num_cpus": max(workers),
                                                                        "include_dashboard": False})
    # Ray starts its worker processes on first use (seconds each on a busy machine; a warm-up round of 5 s trials
    # can end before all have started, and the first measured point then pays for the rest).
    warm_up = 1
    while throughput_point(executor, max(workers), 5.0, 1)["parents"] < max(workers) and warm_up < 10:
      warm_up += 1
    print(f"ray: {warm_up} warm-up round(s)", flush=True)
  points = []
  for n in workers:
    if kind == "local":
      executor = SlotExecutor([Slot(i) for i in range(n)], limits, jax_cache_dir=None)
    points.append(throughput_point(executor, n, sleep_s, rounds))
    base = points[0]["trials_per_hour"] / points[0]["workers"]
    points[-1]["efficiency"] = round(points[-1]["trials_per_hour"] / (n * base), 3)
    print(f"{kind:5s} workers {n}: {points[-1]}", flush=True)
  if kind == "ray":
    import ray
    ray.shutdown()
  return points


def simulate(bench: Any, agent: str, seed: int, workers: int, queries: int) -> list[TrialRecord]:
  """One asynchronous search on the simulated clock; the queried parameters in completion order."""
  durations = np.random.default_rng([seed, workers])
  name, options = VARIANTS.get(agent, (agent, {}))
  with tempfile.TemporaryDirectory(prefix="arrl-async-") as tmp:
    loop = SearchLoop(bench.space, CallableEvaluator(bench.space, bench.objective, "nasbench-sim"),
                      make_agent(name, seed=seed, **options), tmp, Oracle(max_experiments=queries, patience=None),
                      LoopConfig(noise_repeats=1, false_keep=0.5, durable=False), workers=workers)
    clock, heap, order = 0.0, [], 0
    while True:
      for pend in loop.fill(loop.room(len(heap))):
        heapq.heappush(heap, (clock + durations.uniform(0.5, 1.5), order, pend))
        order += 1
      if not heap:
        break
      clock, _, pend = heapq.heappop(heap)
      loop.complete(pend)
    return [r for r in loop.ledger.records() if not r.cached]


def async_efficiency(agents: list[str], workers: list[int], seeds: int, queries: int) -> dict:
  from benchmarks.nas import regret_curves
  from benchmarks.nasbench_graph import NasBenchGraph
  from benchmarks.stats import mean_ci

  bench = NasBenchGraph("cora")
  out: dict[str, Any] = {}
  for agent in agents:
    out[agent] = {}
    for n in workers:
      test_SxN, valid_SxN, t0 = [], [], time.perf_counter()
      for seed in range(seeds):
        recs = simulate(bench, agent, seed, n, queries)
        queried = [bench.record(bench.space.to_params(r.tree)) for r in recs]
        test_N, valid_N = regret_curves(bench, queried, queries)
        test_SxN.append(test_N)
        valid_SxN.append(valid_N)
      point = {}
      for name, x in (("test", test_SxN), ("valid", valid_SxN)):
        mean, lo, hi = mean_ci(np.array(x))
        point[name] = {str(q): [round(float(mean[q - 1]), 3), round(float(lo[q - 1]), 3), round(float(hi[q - 1]), 3)]
                       for q in (25, 50, 100, queries) if q <= queries}
      point["seconds"] = round(time.perf_counter() - t0, 1)
      out[agent][str(n)] = point
      print(f"async {agent:9s} workers {n}: valid regret@{queries} {point['valid'][str(queries)]} | "
            f"test {point['test'][str(queries)]} ({point['seconds']} s)", flush=True)
  return out


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m benchmarks.parallel", description=__doc__.split("\n\n")[0])
  p.add_argument("--part", choices=["throughput", "async"], default="throughput")
  p.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
  p.add_argument("--workers", nargs="+", type=int, help="default: 1 2 4 8 (throughput), 1 4 8 (async)")
  p.add_argument("--sleep-s", type=float, default=10.0)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--agents", nargs="+", default=["random", "uniform", "local", "greedy", "evolution", "tpe", "ppo"],
                 help="registered agents or benchmarks.nas variants (e.g. tpe-noliar)")
  p.add_argument("--seeds", type=int, default=10)
  p.add_argument("--queries", type=int, default=150)
  p.add_argument("--out", default=RESULTS)
  args = p.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  out: dict[str, Any] = {"cores": os.cpu_count(), "load_start": machine_load()}
  if args.part == "throughput":
    out.update(sleep_s=args.sleep_s, rounds=args.rounds, executors={
        k: throughput(k, args.workers or [1, 2, 4, 8], args.sleep_s, args.rounds) for k in args.executors})
  else:
    out.update(seeds=args.seeds, queries=args.queries,
               agents=async_efficiency(args.agents, args.workers or [1, 4, 8], args.seeds, args.queries))
  out["load_end"] = machine_load()
  out["machine"] = machine()   # after the measurements: it imports jax
  with open(os.path.join(args.out, f"{args.part}.json"), "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
