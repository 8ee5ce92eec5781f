"""Machine description, plots (matplotlib, Agg) and the markdown report of a suite's results."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from typing import Any, Callable

import numpy as np

PROJECT_AGENT = "ppo"  # the agent the benchmarks are about; the others are baselines


def machine() -> dict[str, Any]:
  import jax
  cpu = platform.processor()
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
  git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, timeout=10,
                                  cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
  try:
    commit = git("rev-parse", "--short", "HEAD")
    commit += " + uncommitted changes" if commit and git("status", "--porcelain", "--untracked-files=no") else ""
  except (OSError, subprocess.SubprocessError):
    commit = ""
  return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
          "jax": jax.__version__, "jax_backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()], "numpy": np.__version__,
          "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "git_commit": commit}


def emit_json(report: dict[str, Any], out: str | None) -> None:
  """Prints a benchmark's JSON report and, with `out`, also writes it there."""
  text = json.dumps(report, indent=1)
  print(text)
  if out:
    with open(out, "w") as f:
      f.write(text + "\n")


def _pyplot() -> Any:
  """matplotlib, imported where plots are drawn (GPU check machines install the cuda extra, not bench)."""
  import matplotlib
  matplotlib.use("Agg")  # files only: no display on benchmark machines
  import matplotlib.pyplot as plt
  return plt


def _band(ax: Any, x: np.ndarray, s: dict[str, Any], label: str) -> None:
  line, = ax.plot(x, s["mean"], label=label)
  ax.fill_between(x, s["lo"], s["hi"], color=line.get_color(), alpha=0.15, linewidth=0)


def plot_nas(dataset: str, res: dict[str, Any], path: str) -> None:
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for agent, s in res["agents"].items():
    _band(ax, np.arange(1, len(s["mean"]) + 1), s, f"{agent} ({len(s['runs'])} seeds)")
  ax.axhline(res["best_valid_regret"], color="k", linestyle=":", linewidth=1, label="best-validation architecture")
  ax.set(xlabel="queries", ylabel="test regret of selection (pp)",
         title=f"NAS-Bench-Graph {dataset}: mean and 95% interval")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_lm(lm: dict[str, Any], trials_path: str, wall_path: str) -> None:
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for label, s in lm["groups"].items():
    if s["runs"]:
      _band(ax, np.arange(1, s["trials"] + 1), s, f"{label} ({s['runs']} runs)")
  ax.set(xlabel="trials", ylabel="best val_bpb", title=f"LM search ({lm['preset']}, {lm['budget_s']:g} s trials)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(trials_path, dpi=120)
  plt.close(fig)
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, (label, s) in enumerate(lm["groups"].items()):
    for j, c in enumerate(s.get("curves", [])):
      ax.step(np.array(c["wall_s"]) / 60, c["best"], where="post", color=f"C{i}", alpha=0.8,
              label=label if j == 0 else None)
  ax.set(xlabel="wall-clock minutes", ylabel="best val_bpb", title="LM search against wall time (each run)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(wall_path, dpi=120)
  plt.close(fig)


def _ci(d: dict[str, float], fmt: str = ".2f") -> str:
  return f"{d['mean']:{fmt}} [{d['lo']:{fmt}}, {d['hi']:{fmt}}]"


def nas_table(res: dict[str, Any], key: str = "at") -> list[str]:
  """Regret at each checkpoint, one row an agent: test regret (key "at") or validation regret ("valid_at")."""
  agents = {a: s for a, s in res["agents"].items() if key in s}
  checkpoints = sorted({q for s in agents.values() for q in s[key]}, key=int)
  best = {q: min(s[key][q]["mean"] for s in agents.values()) for q in checkpoints}
  header = [f"{q} queries" for q in checkpoints] + [f"valid regret @{checkpoints[-1]}", "s/run", "seeds"]
  lines = ["| agent | " + " | ".join(header) + " |",
           "|---|" + "---|" * (len(checkpoints) + 3)]
  for agent, s in sorted(agents.items(), key=lambda kv: kv[1][key][checkpoints[-1]]["mean"]):
    cells = [f"**{_ci(s[key][q])}**" if s[key][q]["mean"] == best[q] else _ci(s[key][q]) for q in checkpoints]
    lines.append(f"| {agent} | " + " | ".join(cells) + f" | {_ci(s['final_valid'])} | {s['seconds_per_run']:.1f} | "
                 f"{len(s['runs'])} |")
  return lines


def _compare(agents: dict[str, Any], pick: Callable[[dict], dict], what: str, q: int) -> str:
  ours = pick(agents[PROJECT_AGENT])
  name, base = min(((a, pick(s)) for a, s in agents.items() if a.split("-")[0] != PROJECT_AGENT),  # not its variants
                   key=lambda kv: kv[1]["mean"])
  overlap = ours["lo"] <= base["hi"] and base["lo"] <= ours["hi"]
  outcome = "beats" if ours["mean"] < base["mean"] else "loses to" if ours["mean"] > base["mean"] else "ties"
  sig = "the 95% intervals overlap" if overlap else "the 95% intervals do not overlap"
  return (f"On {what} at {q} queries, `{PROJECT_AGENT}` {outcome} the best baseline `{name}`: {ours['mean']:.2f} vs "
          f"{base['mean']:.2f} pp mean ({sig}).")


def verdict(res: dict[str, Any]) -> str:
  """Honest sentences on the project agent against the best baseline at the last checkpoint: on test regret
  (what the selection is worth) and on validation regret (what the search optimises)."""
  agents = res["agents"]
  q = max((k for s in agents.values() for k in s["at"]), key=int)
  if PROJECT_AGENT not in agents:
    return f"`{PROJECT_AGENT}` was not benchmarked (not among this run's agents)."
  if all(a.split("-")[0] == PROJECT_AGENT for a in agents):
    return f"No baseline ran beside `{PROJECT_AGENT}` here."
  return (_compare(agents, lambda s: s["at"][q], "test regret", int(q)) + " "
          + _compare(agents, lambda s: s["final_valid"], "validation regret", int(q)))


def _pct(x: float | None) -> str:
  return "n/a" if x is None else f"{100 * x:.1f}%"


def lm_section(lm: dict[str, Any]) -> list[str]:
  lines = [f"Preset `{lm['preset']}`, {lm['budget_s']:g} s training per trial, {lm['trials']} trials per run, "
           f"{lm['seeds']} seed(s); early abort on unless marked. Run dirs under lm_runs/ are resumed when the suite "
           "runs again (delete them for fresh runs).", "",
           "| agent | runs | trials | final best val_bpb (mean [95% CI]) | wall min/run |", "|---|---|---|---|---|"]
  for label, s in lm["groups"].items():
    if not s["runs"]:
      lines.append(f"| {label} | 0 | - | no trial finished | - |")
      continue
    f = np.array(s["final"])
    ci = {"mean": s["mean"][-1], "lo": s["lo"][-1], "hi": s["hi"][-1]}
    lines.append(f"| {label} | {s['runs']} | {s['trials']} | {_ci(ci, '.4f')} (best {f.min():.4f}) | "
                 f"{np.mean(s['wall_s']) / 60:.1f} |")
  failed = {k: v for k, v in lm["exit_codes"].items() if v != 0}
  if failed:
    lines += ["", f"Runs that did not exit cleanly (see lm_runs/<run>.log): {failed}"]
  lines += ["", "![best val_bpb by trial](lm_trials.png) ![best val_bpb by wall time](lm_walltime.png)", "",
            "### Efficiency", "",
            "| runs | trials | overhead/budget mean (p90) | loop gap median s | aborted | abort savings |",
            "|---|---|---|---|---|---|"]
  for label, e in lm["efficiency"].items():
    o = e["overhead_share"]
    gap = "n/a" if e["loop_gap_s"]["median"] is None else f"{e['loop_gap_s']['median']:.2f}"
    lines.append(f"| {label} | {e['trials']} | {_pct(o['mean'])} ({_pct(o['p90'])}) | {gap} | {e['aborted']} | "
                 f"{e['abort_saved_s']:.0f} s ({_pct(e['abort_saved_share'])} of the training budget) |")
  r = lm["efficiency"]["all"]["replayed_abort_policy"]
  if lm["abort_check"]:
    false_rate = r["would_abort_kept"] / r["would_abort"] if r["would_abort"] else None
    lines += ["", f"Abort policy replayed on the abort-off runs: it would have stopped {r['would_abort']} of "
              f"{r['trials']} trials, saving {r['would_save_s']:.0f} training seconds; {r['would_abort_kept']} of "
              f"those were kept in reality (false-abort rate {_pct(false_rate)})."]
  else:
    lines += ["", "False aborts not measured (needs `--lm-abort-check`: runs with abort off, replayed offline)."]
  return lines


def markdown(results: dict[str, Any]) -> str:
  m = results["machine"]
  out = [f"# arrl benchmarks: `{results['suite']}` suite", "",
         f"Generated {m['date']} by `{results['command']}` (git {m['git_commit'] or 'unknown'}).", "",
         "## Machine", "", "| | |", "|---|---|",
         *[f"| {k} | {m[k]} |" for k in ("platform", "cpu", "cores", "python", "jax", "jax_backend", "numpy",
                                          "load_average")], "",
         "Timings (s/run, wall minutes) depend on the load shown above; treat them as indicative.", ""]
  if results.get("nas"):
    cfg = results["config"]
    out += ["## NAS-Bench-Graph", "",
            f"Test regret (percentage points of test accuracy) of the best-validation architecture found so far, "
            f"after N queries; mean [95% t-interval] over seeds (column `seeds`); lower is better, best in bold. The "
            "validation regret (same selection, validation accuracy: the objective the agents minimise) shows the "
            "search itself; the gap to the test regret is the benchmark's validation/test mismatch. "
            "`uniform` is uniform random search over the table (a reference, not an arrl agent); arrl's `random` "
            "is a random edit of the kept program that leads to an unmeasured program; `local` is local search (White "
            "et al. 2021); `ppo` starts from the shipped meta-trained network and first proposes the warm-start "
            "portfolio shipped beside it, `ppo-frozen` is it without within-run updates, `ppo-noportfolio` without the "
            "portfolio, `ppo-scratch` a fresh network with within-run PPO only, `NAME+portfolio` a baseline given that "
            "portfolio. Each heading gives the test regret of the table's best-validation "
            "architecture (what finding the validation optimum would score; not a floor).", ""]
    for dataset, res in results["nas"].items():
      out += [f"### {dataset} ({res['architectures']} architectures, best test {100 * res['best_test']:.2f}%, "
              f"best-validation architecture's regret {res['best_valid_regret']:.2f} pp)", "", "Test regret:", "",
              *nas_table(res), "", "Validation regret:", "", *nas_table(res, "valid_at"), "", verdict(res), ""]
      stops = {a: s["early_stops"] for a, s in res["agents"].items() if s["early_stops"]}
      if stops:
        out += [f"Runs that stopped before {cfg['nas_queries']} queries (200 proposals in a row had all been "
                f"measured already; their last selection is carried forward): {stops}.", ""]
      out += [f"![regret curves](nas_{dataset}.png)", ""]
  out += ["## LM search (nanochat)", ""]
  out += lm_section(results["lm"]) if results.get("lm") else [results.get("lm_note", "Skipped."), ""]
  if results.get("notes"):
    out += ["", "## Notes", "", *[f"- {n}" for n in results["notes"]]]
  return "\n".join(out) + "\n"
