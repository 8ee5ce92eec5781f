"""The nanochat LM search: each agent through `python -m arrl.main`, read back from the run dirs' trials.jsonl.

Runs go to OUT/lm_runs/<agent>-s<seed>[-noabort]; rerunning the suite resumes them (arrl.main resumes a run
dir), so an interrupted full suite continues where it stopped. `--patience 0` keeps every run to its trial
count.

Efficiency, from the ledgers:
  overhead share   (total_seconds - training_seconds) / budget per executed trial: process start, compile,
                   evaluation and teardown, as a share of the training budget;
  loop gap         seconds between one trial's end and the next one's start: the agent's propose/observe and
                   the ledger writes;
  abort savings    in runs with early abort on, the training seconds aborted trials did not use;
  false aborts     needs runs with abort off (`abort_check`): the abort policy is replayed on each trial's
                   recorded loss curve against the best at that time (the record's `parent`), exactly as the
                   live watcher would have; "false" = it would have stopped a trial that was then kept.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np

from arrl.abort import AbortPolicy, AbortReference, AbortWatcher
from arrl.trial import EvalContext
from benchmarks.stats import mean_ci

STARTUP_ALLOWANCE_S = 180.0  # per trial, on top of the budget, before a run is declared hung


def run_name(agent: str, seed: int, abort: bool) -> str:
  return f"{agent}-s{seed}" + ("" if abort else "-noabort")


def launch(run_dir: str, preset: str, budget_s: float, trials: int, agent: str, seed: int, abort: bool) -> int:
  """Runs (or resumes) one arrl.main search; its output goes to RUN_DIR.log. Returns the exit code."""
  cmd = [sys.executable, "-m", "arrl.main", "--preset", preset, "--budget-s", str(budget_s), "--max-experiments",
         str(trials), "--agent", agent, "--seed", str(seed), "--run-dir", run_dir, "--patience", "0"]
  if not abort:
    cmd.append("--no-abort")
  with open(run_dir + ".log", "a") as log:
    try:
      return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                            timeout=trials * (budget_s + STARTUP_ALLOWANCE_S) + 300).returncode
    except subprocess.TimeoutExpired:
      log.write("\nbenchmarks: run exceeded its time limit and was stopped\n")
      return 124


def read_trials(run_dir: str) -> list[dict[str, Any]]:
  path = os.path.join(run_dir, "trials.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def executed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  return [r for r in records if not r.get("cached")]


def best_so_far(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
  """(best val_bpb after each executed trial (nan before the first score), wall seconds since the first start)."""
  runs = executed(records)
  best, best_N, wall_N = np.inf, [], []
  for r in runs:
    if r.get("val_bpb") is not None:
      best = min(best, r["val_bpb"])
    best_N.append(best if np.isfinite(best) else np.nan)
    wall_N.append(r["finished_at"] - runs[0]["started_at"])
  return np.array(best_N), np.array(wall_N)


def would_abort(record: dict[str, Any], by_id: dict[str, dict], policy: AbortPolicy) -> float | None:
  """The budget fraction at which `policy` would have stopped this trial, or None."""
  best = by_id.get(record.get("parent") or "") or {}
  ref = AbortReference.from_context(EvalContext.against(best.get("val_bpb"), best.get("loss_curve"),
                                                        record.get("sigma") or 0.0))
  if ref is None or record.get("status") in ("baseline", "confirm"):   # the loop never aborts these
    return None
  watcher = AbortWatcher(policy, ref)
  for p, loss in record.get("loss_curve") or []:
    if watcher.observe({"progress": p, "loss": loss}):
      return float(watcher.record["fraction"])
  return None


def efficiency(runs: dict[str, list[dict]], budget_s: float) -> dict[str, Any]:
  """Overhead, loop gaps, abort savings (abort-on runs) and replayed false aborts (abort-off runs)."""
  overhead, gaps, aborted, saved, total = [], [], 0, 0.0, 0
  replay = {"trials": 0, "would_abort": 0, "would_abort_kept": 0, "would_save_s": 0.0}
  policy = AbortPolicy()
  for name, records in runs.items():
    recs = executed(records)
    by_id = {r["trial_id"]: r for r in records}
    total += len(recs)
    for a, b in zip(recs, recs[1:]):
      gaps.append(b["started_at"] - a["finished_at"])
    for r in recs:
      if r.get("total_seconds") is not None and r.get("training_seconds") is not None:
        overhead.append((r["total_seconds"] - r["training_seconds"]) / budget_s)
      if name.endswith("-noabort"):
        replay["trials"] += r.get("status") not in ("baseline", "confirm")
        frac = would_abort(r, by_id, policy)
        if frac is not None:
          replay["would_abort"] += 1
          replay["would_abort_kept"] += bool(r.get("kept"))
          replay["would_save_s"] += (1.0 - frac) * budget_s
      elif r.get("status") == "aborted":
        aborted += 1
        saved += max(0.0, budget_s - (r.get("training_seconds") or 0.0))
  pct = lambda xs, q: float(np.percentile(xs, q)) if xs else None
  return {"trials": total, "overhead_share": {"mean": float(np.mean(overhead)) if overhead else None,
                                              "median": pct(overhead, 50), "p90": pct(overhead, 90)},
          "loop_gap_s": {"median": pct(gaps, 50), "p90": pct(gaps, 90)},
          "aborted": aborted, "abort_saved_s": saved,
          "abort_saved_share": saved / (total * budget_s) if total else None,
          "replayed_abort_policy": replay}


def summarize(runs: list[list[dict]], trials: int) -> dict[str, Any]:
  """Best val_bpb by trial (mean and interval over the runs that have any), final best and wall time per run."""
  curves = [best_so_far(records) for records in runs]
  curves = [(b, w) for b, w in curves if len(b)]
  if not curves:
    return {"runs": 0}
  n = min(trials, min(len(b) for b, _ in curves))
  mean_N, lo_N, hi_N = mean_ci(np.array([b[:n] for b, _ in curves]))
  return {"runs": len(curves), "trials": n, "mean": mean_N.tolist(), "lo": lo_N.tolist(), "hi": hi_N.tolist(),
          "final": [float(b[n - 1]) for b, _ in curves], "wall_s": [float(w[n - 1]) for _, w in curves],
          "curves": [{"best": b.tolist(), "wall_s": w.tolist()} for b, w in curves]}


def run_lm(out_dir: str, preset: str, budget_s: float, trials: int, seeds: int, agents: list[str],
           abort_check: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Each agent x seed with early abort on; with `abort_check`, the first agent again with abort off."""
  root = os.path.join(out_dir, "lm_runs")
  os.makedirs(root, exist_ok=True)
  groups = {a: [(a, s, True) for s in range(seeds)] for a in agents}
  if abort_check:
    groups[f"{agents[0]} (abort off)"] = [(agents[0], s, False) for s in range(seeds)]
  runs, codes = {}, {}
  for plan in groups.values():
    for agent, seed, abort in plan:
      name = run_name(agent, seed, abort)
      t0 = time.perf_counter()
      codes[name] = launch(os.path.join(root, name), preset, budget_s, trials, agent, seed, abort)
      runs[name] = read_trials(os.path.join(root, name))
      log(f"lm {name}: exit {codes[name]}, {len(executed(runs[name]))} trials ({time.perf_counter() - t0:.0f} s)")
  by_group = {label: {run_name(*p): runs[run_name(*p)] for p in plan} for label, plan in groups.items()}
  return {"preset": preset, "budget_s": budget_s, "trials": trials, "seeds": seeds, "abort_check": abort_check,
          "exit_codes": codes,
          "groups": {label: summarize(list(g.values()), trials) for label, g in by_group.items()},
          "efficiency": {**{label: efficiency(g, budget_s) for label, g in by_group.items()},
                         "all": efficiency(runs, budget_s)}}
