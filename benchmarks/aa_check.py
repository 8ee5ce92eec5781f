"""A/A check of the keep rule: the kept program is proposed as its own candidate, again and again.

    python -m benchmarks.aa_check --trials 20                    # cpu preset, 30 s runs, no added load
    python -m benchmarks.aa_check --trials 20 --load-share 0.5   # a busy-loop process beside half the runs
    python -m benchmarks.aa_check --trials 20 --replay RUNS.json  # the loop's decisions on scores measured before

Every candidate is the best program itself, so every keep is a false keep. The runs take the real path:
`arrl.loop.SearchLoop` (baselines, the keep test, confirmation runs; `remeasure` so the program is trained
again instead of read from the ledger), `NanochatEvaluator` and `LocalProcessExecutor` (a worker process per
run, early abort on as in arrl.main); run r of the program trains on data-order seed `--seed + r`.

Reported (RESULTS/aa_check_<tag>.json and .md, rewritten after every run, so a cut-short check still reports):
  - false keeps of the loop's rule with a 95 % Clopper-Pearson interval;
  - the old rule (keep iff best - candidate > 2 sigma, sigma and best from the first 2 baselines, a keep
    making the candidate the best, as arrl did before) replayed on the same candidates' first runs;
  - sigma as the loop pooled it, with its chi-square interval, and the sd of all runs (all runs are the same
    program on different seeds), quiet and loaded runs apart, with their steps and training seconds;
  - the load average of the machine at the start and after the last run.
`--load-share p` runs `--load-procs` busy-loop processes beside a seeded random share p of the runs
(baselines and confirmations included): a best measured under load and a candidate measured without is
the case that fools a keep rule. The run directory is resumed if it exists; `touch RUN_DIR/STOP` ends the
check after the trial in flight.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np

from arrl.agents.base import Proposal
from arrl.keep import NoiseModel
from arrl.loop import LoopConfig, SearchLoop
from arrl.nanochat_objective import NanochatEvaluator
from arrl.nanochat_space import nanochat_space
from arrl.oracle import STOP_FILE, Oracle
from arrl.runner import Executor, TrialJob, TrialResult
from arrl.trial import Status

OLD_K = 2.0            # the old rule: keep iff best - candidate > 2 sigma
OLD_BASELINES = 2      # ... with sigma and best from 2 baseline runs
# Spins until its parent dies (getppid changes), so a killed check leaves no load behind.
BUSY_LOOP = "import os\nppid = os.getppid()\nwhile os.getppid() == ppid:\n  pass\n"


class SameProgram:
  """An agent that always proposes the kept program itself."""
  name = "aa"

  def propose(self, state: Any) -> Proposal:
    return Proposal(tree=state.current, parent=state.current)

  def observe(self, state: Any, outcome: Any) -> None:
    del state, outcome

  def state_dict(self) -> dict:
    return {}

  def load_state_dict(self, d: dict) -> None:
    del d

  def entropy(self) -> float | None:
    return None


def is_loaded(trial_id: str, share: float, seed: int) -> bool:
  """Whether the run `trial_id` gets competing load (seeded, so a resumed check loads the same runs)."""
  return share > 0 and random.Random(f"{seed}/{trial_id}").random() < share


@dataclasses.dataclass
class LoadedExecutor:
  """Runs `procs` busy-loop processes beside the runs `is_loaded` picks."""
  inner: Executor
  share: float
  procs: int = 1
  seed: int = 0
  load: list[subprocess.Popen] = dataclasses.field(default_factory=list)   # the running busy loops

  def run(self, job: TrialJob, monitor: Any = None, cancel: Callable[[], bool] | None = None) -> TrialResult:
    if is_loaded(job.trial_id, self.share, self.seed):
      self.load = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(self.procs)]
    try:
      return self.inner.run(job, monitor=monitor, cancel=cancel)
    finally:
      for p in self.load:
        p.kill()
        p.wait()
      self.load = []


class MissingSeed(Exception):
  """A replayed run needs a seed whose score was not measured."""


@dataclasses.dataclass
class ReplayExecutor:
  """Returns the measured result of the job's seed instead of training: `scores` maps seed -> run record."""
  scores: dict[int, dict[str, Any]]
  source: str = "the replay file"

  def run(self, job: TrialJob, monitor: Any = None, cancel: Callable[[], bool] | None = None) -> TrialResult:
    seed = job.payload["seed"]
    if seed not in self.scores:
      raise MissingSeed(f"{self.source}: no score measured for seed {seed} (measured: {len(self.scores)} seeds, "
                        f"{min(self.scores)}-{max(self.scores)}); measure it with benchmarks.seed_spread --first-seed")
    r = self.scores[seed]
    return TrialResult(trial_id=job.trial_id, status=Status.OK, val_bpb=r["val_bpb"], num_steps=r["steps"],
                       training_seconds=r.get("training_seconds"), training_wall_seconds=r.get("training_wall_seconds"))


def measured_scores(path: str) -> dict[int, dict[str, Any]]:
  """seed -> {val_bpb, steps, ...} from a `benchmarks.seed_spread --out` file or an A/A check's json."""
  try:
    with open(path) as f:
      runs = json.load(f)["runs"]
    out: dict[int, dict[str, Any]] = {}
    for r in runs:
      if r.get("status", "ok") in ("baseline", "keep", "discard", "confirm", "ok") and r.get("val_bpb") is not None:
        if r.get("data_seed", r["seed"]) != r["seed"]:
          raise ValueError(f"seed {r['seed']} ran on data-order seed {r['data_seed']} (a --vary run, not a loop's run)")
        rec = {"val_bpb": float(r["val_bpb"]), "steps": int(r.get("steps", r.get("num_steps"))),
               "training_seconds": r.get("training_seconds"), "training_wall_seconds": r.get("training_wall_seconds")}
        seen = out.setdefault(int(r["seed"]), rec)
        if (seen["val_bpb"], seen["steps"]) != (rec["val_bpb"], rec["steps"]):
          raise ValueError(f"seed {r['seed']} has two different scores")
    return out
  except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise SystemExit(f"error: --replay {path}: {e}")


def make_loop(run_dir: str, preset: str, budget_s: float, compile_cap_s: float, executor: Executor,
              config: LoopConfig, env_digest: str, seed: int = 0, cache_dir: str | None = None) -> SearchLoop:
  from nanochat_jax.env import get_preset
  evaluator = NanochatEvaluator(executor=executor, preset=preset, budget_s=budget_s, compile_cap_s=compile_cap_s,
                                env_digest=env_digest, run_dir=run_dir, cache_dir=cache_dir, seed=seed)
  return SearchLoop(nanochat_space(get_preset(preset)), evaluator, SameProgram(), run_dir,
                    Oracle(patience=None), dataclasses.replace(config, remeasure=True))


def rows(loop: SearchLoop) -> list[dict]:
  """The loop's ledger rows, as written to trials.jsonl."""
  return [r.to_dict() for r in loop.ledger.records()]


def candidates(records: list[dict]) -> list[dict]:
  """The A/A candidates' rows (baselines and confirmation runs left out)."""
  return [r for r in records if r["status"] != "baseline" and not r.get("confirms")]


def old_rule_keeps(baselines: list[float], first_runs: list[float | None]) -> list[bool]:
  """The old rule replayed: sigma and best from the first 2 baselines; a keep makes the candidate the best."""
  base = baselines[:OLD_BASELINES]
  sigma, best = NoiseModel.from_samples(base).sigma, float(np.mean(base))
  kept = []
  for score in first_runs:
    kept.append(score is not None and best - score > OLD_K * sigma)
    if kept[-1]:
      best = score
  return kept


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
  """Clopper-Pearson interval of a rate k / n."""
  from scipy.special import betaincinv
  tail = (1 - level) / 2
  lo = float(betaincinv(k, n - k + 1, tail)) if k > 0 else 0.0
  hi = float(betaincinv(k + 1, n - k, 1 - tail)) if k < n else 1.0
  return lo, hi


def _spread(rows: list[dict]) -> dict[str, Any]:
  vals = [r["val_bpb"] for r in rows]
  return {"runs": len(rows), "mean_val_bpb": float(np.mean(vals)) if vals else None,
          "sd_val_bpb": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
          "mean_steps": float(np.mean([r["num_steps"] for r in rows])) if rows else None,
          "mean_training_seconds": _mean([r["training_seconds"] for r in rows]),
          "mean_wall_seconds": _mean([r.get("training_wall_seconds") for r in rows])}


def _mean(xs: list[Any]) -> float | None:
  xs = [x for x in xs if x is not None]   # runs recorded before training_wall_seconds existed lack it
  return float(np.mean(xs)) if xs else None


def summarize(loop: SearchLoop, share: float, seed: int, load_avg: dict[str, list[float]]) -> dict[str, Any]:
  recs = rows(loop)
  cands = candidates(recs)
  baselines = [r["val_bpb"] for r in recs if r["status"] == "baseline"]
  kept = sum(r["status"] == "keep" for r in cands)
  old = old_rule_keeps(baselines, [r["val_bpb"] if r["run_status"] == "ok" else None for r in cands])
  noise = loop.noise()
  ok = [dict(r, loaded=is_loaded(r["trial_id"], share, seed)) for r in recs if r.get("run_status") == "ok"]
  n = len(cands)
  return {
      "candidates": n, "load_share": share, "load_average": load_avg,
      "rule": {"false_keep": loop.config.false_keep, "confirm": loop.config.confirm,
               "noise_repeats": loop.config.noise_repeats, "kept": kept, "rate": kept / n if n else None,
               "rate_ci95": binomial_ci(kept, n) if n else None,
               "confirmed": sum(bool(r.get("confirmed_by")) for r in cands),
               "aborted": sum(r["status"] == "aborted" for r in cands),
               "failed": sum(r["run_status"] not in ("ok", "aborted") for r in cands)},
      "old_rule": {"kept": sum(old), "rate": sum(old) / n if n else None,
                   "rate_ci95": binomial_ci(sum(old), n) if n else None,
                   "sigma": NoiseModel.from_samples(baselines[:OLD_BASELINES]).sigma
                   if len(baselines) >= OLD_BASELINES else None},
      "sigma": {"sigma": noise.sigma, "raw": noise.raw_sigma, "dof": noise.dof, "ci95": noise.interval()},
      "all_runs": _spread(ok), "quiet_runs": _spread([r for r in ok if not r["loaded"]]),
      "loaded_runs": _spread([r for r in ok if r["loaded"]]),
      "runs": [{k: r.get(k) for k in ("trial_id", "status", "val_bpb", "mean_val_bpb", "num_steps",
                                      "training_seconds", "training_wall_seconds", "seed", "keep_margin")}
               | {"loaded": is_loaded(r["trial_id"], share, seed)} for r in recs],
  }


def _fmt(x: Any, spec: str = ".4f") -> str:
  return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _rate(d: dict[str, Any]) -> str:
  lo, hi = d["rate_ci95"] or (None, None)
  return f"{_fmt(d['rate'], '.2f')} [{_fmt(lo, '.2f')}, {_fmt(hi, '.2f')}]"


def markdown(s: dict[str, Any], title: str) -> str:
  rule, old, sg = s["rule"], s["old_rule"], s["sigma"]
  lines = [f"# {title}", "",
           f"{s['candidates']} A/A candidates; competing load beside {s['load_share']:.0%} of the runs; load "
           f"average (1/5/15 min) at start {s['load_average']['start']}, at end {s['load_average']['end']}.", "",
           "| rule | false keeps | rate [95% CI] |", "|---|---|---|",
           f"| one-sided t-test, alpha {rule['false_keep']}, {rule['noise_repeats']} baselines, {rule['confirm']} "
           f"confirmation run(s) | {rule['kept']} / {s['candidates']} | {_rate(rule)} |",
           f"| old: best - cand > 2 sigma (2 baselines, sigma {_fmt(old['sigma'])}) | {old['kept']} / "
           f"{s['candidates']} | {_rate(old)} |", "",
           f"Candidates confirmed: {rule['confirmed']}, early-aborted: {rule['aborted']}, failed: {rule['failed']}. "
           f"Pooled sigma {_fmt(sg['sigma'])} (df {sg['dof']}, 95% CI [{_fmt(sg['ci95'][0])}, {_fmt(sg['ci95'][1])}]).",
           "", "| runs | n | mean val_bpb | sd | mean steps | mean training s (budget clock) | mean training s (wall) |",
           "|---|---|---|---|---|---|---|"]
  for name in ("all_runs", "quiet_runs", "loaded_runs"):
    r = s[name]
    lines.append(f"| {name.split('_')[0]} | {r['runs']} | {_fmt(r['mean_val_bpb'])} | {_fmt(r['sd_val_bpb'])} | "
                 f"{_fmt(r['mean_steps'], '.1f')} | {_fmt(r['mean_training_seconds'], '.1f')} | "
                 f"{_fmt(r['mean_wall_seconds'], '.1f')} |")
  lines += ["", "| trial | status | val_bpb | steps | training s | wall s | seed | loaded |",
            "|---|---|---|---|---|---|---|---|"]
  lines += [f"| {r['trial_id']} | {r['status']} | {_fmt(r['val_bpb'])} | {r['num_steps']} | "
            f"{_fmt(r['training_seconds'], '.1f')} | {_fmt(r.get('training_wall_seconds'), '.1f')} | {r['seed']} | "
            f"{'yes' if r['loaded'] else ''} |" for r in s["runs"]]
  return "\n".join(lines) + "\n"


def run_check(loop: SearchLoop, trials: int, report: Callable[[], None]) -> None:
  """Steps the loop until `trials` A/A candidates are decided or RUN_DIR/STOP exists, reporting after every run."""
  while len(candidates(rows(loop))) < trials and not os.path.exists(os.path.join(loop.run_dir, STOP_FILE)):
    loop.step()
    report()


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.aa_check", description=__doc__.split("\n\n")[0])
  p.add_argument("--preset", default="cpu", choices=["cpu", "gpu", "tiny"])
  p.add_argument("--budget-s", type=float, default=30.0)
  p.add_argument("--trials", type=int, default=20, help="A/A candidates to decide")
  p.add_argument("--load-share", type=float, default=0.0, help="share of runs with competing busy-loop load")
  p.add_argument("--load-procs", type=int, default=1, help="busy-loop processes beside a loaded run")
  p.add_argument("--false-keep", type=float, default=0.05)
  p.add_argument("--confirm", type=int, default=1)
  p.add_argument("--noise-repeats", type=int, default=3)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--tag", help="results name (default: quiet, or load with --load-share > 0)")
  p.add_argument("--run-dir", help="default: runs/aa_check-<tag>")
  p.add_argument("--out", default=os.path.join("benchmarks", "results"))
  p.add_argument("--cache-dir")
  p.add_argument("--replay", metavar="FILE", help="decide on the scores FILE measured per seed; train nothing")
  args = p.parse_args(argv)
  if args.trials < 1 or not 0 <= args.load_share <= 1 or args.load_procs < 1:
    p.error("need --trials >= 1, --load-share in [0, 1] and --load-procs >= 1")
  from arrl.main import worker_env
  from arrl.runner import LocalProcessExecutor
  from nanochat_jax.data import load_run_data
  from nanochat_jax.env import get_preset

  tag = args.tag or ("load" if args.load_share > 0 else "quiet")
  run_dir = args.run_dir or os.path.join("runs", f"aa_check-{tag}")
  preset = get_preset(args.preset)
  digest = load_run_data(preset, None, None, args.cache_dir).env_digest(preset, args.budget_s)
  if args.replay:
    if args.load_share:
      p.error("--replay trains nothing: --load-share does not apply")
    executor: Executor = ReplayExecutor(measured_scores(args.replay), args.replay)
  else:
    executor = LoadedExecutor(LocalProcessExecutor(env=worker_env()), args.load_share, args.load_procs, args.seed)
  loop = make_loop(run_dir, preset.name, args.budget_s, preset.compile_cap_s, executor,
                   LoopConfig(noise_repeats=args.noise_repeats, false_keep=args.false_keep, confirm=args.confirm),
                   digest, args.seed, args.cache_dir)
  load_avg = {"start": [round(x, 2) for x in os.getloadavg()], "end": []}
  os.makedirs(args.out, exist_ok=True)
  title = (f"A/A check: {preset.name} preset, {args.budget_s:g} s runs ({tag}, {time.strftime('%Y-%m-%d %H:%M %Z')})"
           + (f"; replayed on the scores of {args.replay}" if args.replay else ""))

  def report() -> None:
    load_avg["end"] = [round(x, 2) for x in os.getloadavg()]
    summary = summarize(loop, args.load_share, args.seed, load_avg)
    with open(os.path.join(args.out, f"aa_check_{tag}.json"), "w") as f:
      json.dump({"preset": preset.name, "budget_s": args.budget_s, "run_dir": run_dir, **summary}, f, indent=1)
    with open(os.path.join(args.out, f"aa_check_{tag}.md"), "w") as f:
      f.write(markdown(summary, title))

  try:
    run_check(loop, args.trials, report)
  except MissingSeed as e:
    print(f"stopped early: {e}", file=sys.stderr)
  report()
  print(open(os.path.join(args.out, f"aa_check_{tag}.md")).read())
  return 0


if __name__ == "__main__":
  sys.exit(main())
