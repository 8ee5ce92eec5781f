"""NAS-Bench-Graph runs: each agent through `arrl.search`, scored by the test regret of its selection.

A query is one architecture evaluated (a table look-up); programs the loop already measured are cached and
do not count (`arrl.search` semantics). After each query the search *selects* the architecture with the best
validation accuracy so far (the first found among ties); its test regret is the table's best test accuracy
minus the selection's, in percentage points (its validation regret likewise, for the objective itself).
The loop runs with `noise_repeats=1` and `false_keep=0.5` (a keep margin of z_0.5 * sigma = 0): the table is
deterministic, so any strictly better score is an improvement.

`uniform` is a reference, not an arrl agent: uniform random search over the table's architectures without
replacement (the usual NAS baseline; arrl's `random` agent is a random *edit* of the kept program instead).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

import arrl.search
from arrl.portfolio import SHIPPED_PORTFOLIO
from benchmarks.nasbench_graph import NasBenchGraph, Record
from benchmarks.stats import mean_ci

UNIFORM = "uniform"
CHECKPOINTS = (25, 50, 100, 150)
# Named variants of registered agents: name -> (agent, its options)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ppo-scratch": ("ppo", {"init_from": "none"}),           # no meta-training: a fresh network, within-run PPO
    "ppo-frozen": ("ppo", {"update_every": 0}),              # the pretrained network, no within-run updates
    "tpe-noliar": ("tpe", {"constant_liar": False}),         # parallel workers: programs in flight ignored
    "ppo-fresh-frozen": ("ppo", {"init_from": "none", "update_every": 0}),  # a fresh network, never updated
    "ppo-noportfolio": ("ppo", {"warm_start": "none"}),      # the pretrained network without its warm start
    # the baselines warm-started like ppo (the shipped portfolio first): what the portfolio alone is worth
    **{f"{a}+portfolio": (a, {"warm_start": SHIPPED_PORTFOLIO}) for a in ("random", "greedy", "local", "evolution", "tpe")},
}


def init_variants(items: list[str], error: Callable[[str], Any]) -> dict[str, dict[str, Any]]:
  """`--init NAME=DIR` flags -> {NAME: ppo options starting from the network of `arrl.pretrain --ship-to DIR`},
  the network alone (no warm-start portfolio, even one beside it: these rows compare networks); a malformed item
  or a DIR without params.npz goes to `error` (argparse's: one line, exit 2)."""
  out = {}
  for item in items:
    name, sep, path = item.partition("=")
    if not sep or not os.path.exists(os.path.join(path, "params.npz")):
      error(f"--init {item!r}: expected NAME=DIR with DIR/params.npz (python -m arrl.pretrain --ship-to DIR)")
    out[name] = {"init_from": path, "warm_start": "none"}
  return out


def regret_curves(bench: NasBenchGraph, queried: list[Record], queries: int) -> tuple[np.ndarray, np.ndarray]:
  """(test regret, validation regret) in pp of the best-validation selection after each of `queries` queries.

  The validation regret (the table's best validation accuracy minus the selection's) is what the search
  optimises; the test regret is what the selection is worth. A search that stopped early (every proposal
  already measured) keeps its last selection.
  """
  if not queried:
    raise ValueError("a regret curve needs at least one queried architecture")
  test_N, valid_N = np.empty(queries), np.empty(queries)
  selected = queried[0]
  for i in range(queries):
    if i < len(queried) and queried[i].valid > selected.valid:
      selected = queried[i]
    test_N[i] = 100.0 * (bench.best_test - selected.test)
    valid_N[i] = 100.0 * (bench.best_valid - selected.valid)
  return test_N, valid_N


def best_valid_regret(bench: NasBenchGraph) -> float:
  """Test regret of the table's best-validation architecture (the best-testing one among ties): what a search
  that found the validation optimum would score. Not a floor: a worse-validating selection can test better."""
  return 100.0 * (bench.best_test - max(r.test for r in bench.table.values() if r.valid == bench.best_valid))


def run_agent(bench: NasBenchGraph, agent: str, seed: int, queries: int,
              agent_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
  t0 = time.perf_counter()
  if agent == UNIFORM:
    keys = sorted(bench.table)
    order = np.random.default_rng(seed).permutation(len(keys))[:queries]
    queried, stop = [bench.table[keys[i]] for i in order], "max-experiments"
    distinct = len(queried)
  else:
    name, options = VARIANTS.get(agent, (agent, {}))
    res = arrl.search.search(bench.space, bench.objective, agent=name, max_trials=queries, seed=seed,
                             noise_repeats=1, false_keep=0.5, agent_kwargs={**options, **(agent_kwargs or {})})
    params = [t.params for t in res.trials if not t.cached]
    queried, stop = [bench.record(p) for p in params], res.stop_reason
    distinct = len({bench.key(p) for p in params})
  test_N, valid_N = regret_curves(bench, queried, queries)
  return {"seed": seed, "regret": test_N.round(4).tolist(), "valid_regret": valid_N.round(4).tolist(),
          "queries_run": len(queried), "distinct_architectures": distinct, "stop_reason": stop,
          "seconds": time.perf_counter() - t0}


def summarize(runs: list[dict[str, Any]], queries: int) -> dict[str, Any]:
  regret_SxN = np.array([r["regret"] for r in runs])
  mean_N, lo_N, hi_N = mean_ci(regret_SxN)
  at = {str(q): {"mean": float(mean_N[q - 1]), "lo": float(lo_N[q - 1]), "hi": float(hi_N[q - 1])}
        for q in [*(c for c in CHECKPOINTS if c < queries), queries]}  # JSON keys: strings
  valid_mean_N, valid_lo_N, valid_hi_N = mean_ci(np.array([r["valid_regret"] for r in runs]))
  final_valid = {"mean": float(valid_mean_N[-1]), "lo": float(valid_lo_N[-1]), "hi": float(valid_hi_N[-1])}
  valid_at = {q: {"mean": float(valid_mean_N[int(q) - 1]), "lo": float(valid_lo_N[int(q) - 1]),
                  "hi": float(valid_hi_N[int(q) - 1])} for q in at}
  return {"mean": mean_N.tolist(), "lo": lo_N.tolist(), "hi": hi_N.tolist(), "at": at, "valid_at": valid_at,
          "final_valid": final_valid,
          "early_stops": sum(r["queries_run"] < queries for r in runs),
          "seconds_per_run": float(np.mean([r["seconds"] for r in runs])), "runs": runs}


def run_nas(datasets: list[str], agents: list[str], seeds: int, queries: int,
            log: Callable[[str], None] = print) -> dict[str, Any]:
  """{dataset: {best_test, best_valid, best_valid_regret, architectures, agents: {agent: summary}}}."""
  out: dict[str, Any] = {}
  for dataset in datasets:
    bench = NasBenchGraph(dataset)
    per_agent = {}
    for agent in agents:
      runs = []
      for seed in range(seeds):
        runs.append(run_agent(bench, agent, seed, queries))
        log(f"nas {dataset} {agent} seed {seed}: regret@{queries} {runs[-1]['regret'][-1]:.2f} pp "
            f"({runs[-1]['seconds']:.1f} s)")
      per_agent[agent] = summarize(runs, queries)
    out[dataset] = {"best_test": bench.best_test, "best_valid": bench.best_valid,
                    "best_valid_regret": best_valid_regret(bench), "architectures": len(bench.table),
                    "agents": per_agent}
  return out
