"""Report on arrl runs, finished or still running: a plot and a markdown summary per run, a comparison plot.

    python -m arrl.report RUN_DIR [RUN_DIR ...] [--out DIR] [--export-best FILE [--preset NAME]]

Per run (files named after the run directory): NAME.png, val_bpb of every trial with the kept ones marked and
annotated with their edits, the running best as a step line with its noise band (+-2 sigma), failures as
crosses on the top edge; NAME.md, status counts, the best program as a diff from the run's default (baseline)
program, the top-10 trials and where the time went. With several run dirs also comparison.png: the best so far
against trials and against hours, one line per run. `--export-best` writes the best program of one run as a
standalone training script (arrl.nanochat_space.export_script).

The run's trials.jsonl is only read (arrl.ledger.read_records): a line still being written by a running loop
is left out. "Best" is the loop's notion: the baseline runs' mean until the first kept trial, then the latest
kept trial's score, the mean of its runs (kept = passed the keep test of arrl.keep, confirmations included).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import math
import os
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from arrl import tree as tree_lib  # noqa: E402
from arrl.keep import NoiseModel  # noqa: E402
from arrl.ledger import LEDGER_FILE, LedgerError, read_records  # noqa: E402

TOP_N = 10
BAND_SIGMAS = 2.0     # the noise band drawn around the running best


class ReportError(Exception):
  """A run directory cannot be reported on (one line for the user)."""


def kept_score(rec: dict) -> float:
  """A kept trial's score: the mean of its runs (its confirmations included) when recorded."""
  return rec["mean_val_bpb"] if rec.get("mean_val_bpb") is not None else rec["val_bpb"]


def _finite(x: object) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclasses.dataclass
class Run:
  """The trials of one run directory, and what the report derives from them."""
  run_dir: str
  records: list[dict]

  @classmethod
  def load(cls, run_dir: str) -> "Run":
    if not os.path.isdir(run_dir):
      raise ReportError(f"{run_dir}: no such run directory")
    if not os.path.exists(os.path.join(run_dir, LEDGER_FILE)):
      raise ReportError(f"{run_dir}: no {LEDGER_FILE} (not an arrl run directory, or no trial has finished yet)")
    try:
      records = read_records(run_dir)
    except LedgerError as e:
      raise ReportError(str(e)) from e
    if not records:
      raise ReportError(f"{os.path.join(run_dir, LEDGER_FILE)}: no finished trial yet")
    return cls(run_dir, records)

  @property
  def name(self) -> str:
    return os.path.basename(os.path.normpath(self.run_dir)) or self.run_dir

  @property
  def executed(self) -> list[dict]:
    """Trials that ran (cached ones reuse an earlier measurement)."""
    return [r for r in self.records if not r.get("cached")]

  @property
  def baseline_scores(self) -> list[float]:
    return [r["val_bpb"] for r in self.records if r["status"] == "baseline" and _finite(r.get("val_bpb"))]

  @property
  def sigma(self) -> float | None:
    scores = self.baseline_scores
    return NoiseModel.from_samples(scores).sigma if scores else None

  @property
  def default_program(self) -> tree_lib.Node | None:
    """The program the baseline runs measured (the run's starting point)."""
    base = next((r for r in self.records if r["status"] == "baseline" and r.get("program")), None)
    return tree_lib.from_json(base["program"]) if base else None

  def running_best(self, records: list[dict]) -> np.ndarray:
    """The best to beat after each of `records` (nan before any baseline): baseline mean, then each keep."""
    baselines: list[float] = []
    best, out = math.nan, []
    for r in records:
      if r["status"] == "baseline" and _finite(r.get("val_bpb")):
        baselines.append(r["val_bpb"])
        best = float(np.mean(baselines))
      elif r["status"] == "keep":
        best = kept_score(r)
      out.append(best)
    return np.array(out, dtype=np.float64)

  @property
  def best(self) -> dict | None:
    """The latest kept trial (None when nothing was kept)."""
    return next((r for r in reversed(self.records) if r["status"] == "keep"), None)

  def time_split(self) -> dict[str, float]:
    """Seconds of training, compile, other per-trial time (start-up, data, evaluation, teardown) and time
    between trials (agent, ledger, and any pause before a resume), over the trials that ran."""
    ran = [r for r in self.executed if _finite(r.get("started_at")) and _finite(r.get("finished_at"))]
    training = sum(r.get("training_seconds") or 0.0 for r in ran)
    compile_s = sum(r.get("compile_seconds") or 0.0 for r in ran)
    in_trials = sum(r["finished_at"] - r["started_at"] for r in ran)
    span = ran[-1]["finished_at"] - ran[0]["started_at"] if ran else 0.0
    return {"training": training, "compile": compile_s, "trial overhead": max(0.0, in_trials - training - compile_s),
            "between trials": max(0.0, span - in_trials), "span": span}


# ---- plots ------------------------------------------------------------------------------------------------
def _short(text: str, width: int = 38) -> str:
  return textwrap.shorten(text, width=width, placeholder="...")


def plot_run(run: Run, path: str) -> None:
  recs = run.records
  x_N = np.arange(len(recs))
  val_N = np.array([r["val_bpb"] if _finite(r.get("val_bpb")) else np.nan for r in recs], dtype=np.float64)
  scored = np.isfinite(val_N)
  best_N = run.running_best(recs)
  sigma = run.sigma or 0.0
  fig, ax = plt.subplots(figsize=(12, 5.5))
  if scored.any():
    ref = np.nanmin(best_N) if np.isfinite(best_N).any() else np.nanmin(val_N)
    start = best_N[np.isfinite(best_N)][0] if np.isfinite(best_N).any() else np.nanmedian(val_N)
    lo = min(np.nanmin(val_N), ref - BAND_SIGMAS * sigma)
    # Hopeless trials would squash the interesting range: cap the axis and pin them to its top edge.
    cap = min(start + max(2 * (start - lo), 10 * sigma, 0.01), max(np.nanmax(val_N), start + BAND_SIGMAS * sigma))
  else:
    lo, cap = 0.0, 1.0
  pad = 0.04 * max(cap - lo, 1e-3)
  edge = cap + 1.5 * pad           # where failures and points above the cap are drawn
  status_N = np.array([r["status"] for r in recs])
  for status, style in (("discard", dict(color="0.6", s=18, label="discard")),
                        ("baseline", dict(color="tab:blue", s=30, marker="s", label="baseline (default program)")),
                        ("keep", dict(color="tab:green", s=60, edgecolor="k", zorder=5, label="keep"))):
    m = (status_N == status) & scored
    if m.any():
      ax.scatter(x_N[m & (val_N <= cap)], val_N[m & (val_N <= cap)], **style)
  over = scored & (val_N > cap)
  if over.any():
    ax.scatter(x_N[over], np.full(over.sum(), edge), marker="^", color="0.4", s=30, label="above the axis")
  failed = ~scored
  if failed.any():
    ax.scatter(x_N[failed], np.full(failed.sum(), edge), marker="x", color="tab:red", s=30,
               label="crash / timeout / aborted / diverged")
  if np.isfinite(best_N).any():
    ax.step(x_N, best_N, where="post", color="tab:green", linewidth=1.5, label="best (to beat)")
    if sigma:
      ax.fill_between(x_N, best_N - BAND_SIGMAS * sigma, best_N + BAND_SIGMAS * sigma, step="post",
                      color="tab:green", alpha=0.12, linewidth=0, label=f"best +- {BAND_SIGMAS:g} sigma (noise)")
  for i, r in enumerate(recs):
    if r["status"] == "keep":
      ax.annotate(_short(r.get("description") or ""), (i, val_N[i]), xytext=(5, 5), textcoords="offset points",
                  fontsize=7, rotation=20, color="darkgreen")
  ax.set_ylim(lo - pad, edge + 1.5 * pad)
  ax.set(xlabel="trial", ylabel="val_bpb (lower is better)",
         title=f"{run.name}: {len(recs)} trials, {sum(status_N == 'keep')} kept"
               + (f", sigma {sigma:.4f}" if run.sigma else ""))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_comparison(runs: list[Run], path: str) -> None:
  fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  for run in runs:
    recs = run.executed
    best_N = run.running_best(recs)
    hours_N = np.array([(r["finished_at"] - recs[0]["started_at"]) / 3600 for r in recs])
    line, = ax_t.step(np.arange(1, len(recs) + 1), best_N, where="post", label=run.name)
    ax_h.step(hours_N, best_N, where="post", color=line.get_color(), label=run.name)
  ax_t.set(xlabel="trials run", ylabel="best val_bpb", title="best so far by trial")
  ax_h.set(xlabel="hours since the run's first trial", title="best so far by time")
  for ax in (ax_t, ax_h):
    ax.grid(alpha=0.3)
  ax_h.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


# ---- markdown ---------------------------------------------------------------------------------------------
def _when(t: float | None) -> str:
  if not _finite(t):
    return "?"
  return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _bpb(x: object) -> str:
  return f"{x:.6f}" if _finite(x) else "-"


def _cell(text: str) -> str:
  return " ".join(str(text).split()).replace("|", "\\|")


def markdown(run: Run, png_name: str) -> str:
  recs, ran = run.records, run.executed
  sigma, base = run.sigma, run.baseline_scores
  base_mean = float(np.mean(base)) if base else None
  lines = [f"# arrl run `{run.run_dir}`", "",
           f"{len(recs)} trials ({len(ran)} run, {len(recs) - len(ran)} cached), "
           f"{_when(recs[0].get('started_at'))} to {_when(recs[-1].get('finished_at'))}.",
           f"Baseline (default program, {len(base)} run{'' if len(base) == 1 else 's'}): mean val_bpb {_bpb(base_mean)}, sigma "
           + (f"{sigma:.6f}" if sigma is not None else "unknown (no baseline finished)") + ".", "",
           "| status | trials |", "|---|---|"]
  counts = collections.Counter(r["status"] for r in recs)
  lines += [f"| {s} | {n} |" for s, n in counts.most_common()]
  lines += ["", "## Best program", ""]
  best, default = run.best, run.default_program
  if best is None:
    lines.append("No trial was kept: the best is still the default program.")
  else:
    score = kept_score(best)
    gain = f", {base_mean - score:.6f} below the baseline mean" if base_mean is not None else ""
    noise = f" ({(base_mean - score) / sigma:.1f} sigma)" if base_mean is not None and sigma else ""
    runs = f" (mean of {best['n_runs']} runs)" if (best.get("n_runs") or 1) > 1 else ""
    lines.append(f"Trial {best['trial_id']}: val_bpb {_bpb(score)}{runs}{gain}{noise}.")
    if default is None:
      lines += ["", "No baseline record, so no default to compare with; the program:", "", "```",
                tree_lib.render(tree_lib.from_json(best["program"])), "```"]
    else:
      changes = tree_lib.diff(default, tree_lib.from_json(best["program"]))
      lines += ["", "Changes from the default program:", ""]
      lines += [f"- `{c}`" for c in changes.split("; ")] if changes else ["- none"]
  lines += ["", f"## Top {TOP_N}", "", "| rank | trial | status | val_bpb | vs baseline | edit |",
            "|---|---|---|---|---|---|"]
  scored = sorted((r for r in ran if _finite(r.get("val_bpb"))), key=lambda r: r["val_bpb"])
  for i, r in enumerate(scored[:TOP_N], 1):
    delta = f"{r['val_bpb'] - base_mean:+.6f}" if base_mean is not None else "-"
    lines.append(f"| {i} | {r['trial_id']} | {r['status']} | {_bpb(r['val_bpb'])} | {delta} | "
                 f"{_cell(r.get('description') or '')} |")
  split = run.time_split()
  span = split.pop("span")
  lines += ["", "## Time", "", f"From the first trial's start to the last one's end: {span / 3600:.3f} h.", "",
            "| | hours | share |", "|---|---|---|"]
  labels = {"training": "training", "compile": "compile",
            "trial overhead": "other trial time (start-up, data, evaluation, teardown)",
            "between trials": "between trials (agent, ledger, pauses)"}
  for key, s in split.items():
    lines.append(f"| {labels[key]} | {s / 3600:.3f} | {100 * s / span if span else 0:.1f}% |")
  lines += ["", f"![val_bpb per trial]({png_name})", ""]
  return "\n".join(lines)


# ---- export and command line --------------------------------------------------------------------------------
def export_best(run: Run, path: str, preset: str | None) -> str:
  """Writes the run's best program (its default when nothing was kept) as a training script; returns the preset."""
  from arrl.nanochat_space import export_script   # deferred: imports jax
  from arrl.plugins import load as load_plugin, recorded as recorded_plugins
  from nanochat_jax.env import PRESETS

  rec = run.best or next((r for r in run.records if r["status"] == "baseline" and r.get("program")), None)
  if rec is None:
    raise ReportError(f"{run.run_dir}: no kept or baseline trial, nothing to export")
  tree = tree_lib.from_json(rec["program"])
  if preset is None:   # presets differ in sequence length
    seq = tree_lib.flatten(tree).get("model.sequence_len")
    preset = next((p.name for p in PRESETS.values() if p.seq_len == seq), None)
    if preset is None:
      raise ReportError(f"{run.run_dir}: cannot tell the preset of trial {rec['trial_id']} (sequence_len {seq}); "
                        "pass --preset")
  try:
    specs = [load_plugin(p["spec"]).spec for p in recorded_plugins(run.run_dir)]  # their variants validate
    script = export_script(tree, preset, specs)
  except (ValueError, KeyError) as e:  # PluginError is a ValueError
    raise ReportError(f"--export-best: trial {rec['trial_id']} cannot be exported: {e}") from e
  with open(path, "w") as f:
    f.write(script)
  return preset


def _unique_names(runs: list[Run]) -> list[str]:
  seen: collections.Counter[str] = collections.Counter()
  out = []
  for run in runs:
    seen[run.name] += 1
    out.append(run.name if seen[run.name] == 1 else f"{run.name}-{seen[run.name]}")
  return out


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m arrl.report", description=__doc__.split("\n\n")[0])
  p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (finished or running)")
  p.add_argument("--out", help="output directory (default: RUN_DIR/report for one run, ./arrl-report for several)")
  p.add_argument("--export-best", metavar="FILE", help="write the best program of the (one) run as a script")
  p.add_argument("--preset", help="preset of --export-best's script (default: inferred from the program)")
  args = p.parse_args(argv)
  if args.export_best and len(args.run_dirs) != 1:
    p.error("--export-best needs exactly one RUN_DIR")
  try:
    runs = [Run.load(d) for d in args.run_dirs]
    out = args.out or (os.path.join(args.run_dirs[0], "report") if len(runs) == 1 else "arrl-report")
    try:
      os.makedirs(out, exist_ok=True)
    except OSError as e:
      raise ReportError(f"--out {out}: {e.strerror or e}") from e
    for run, name in zip(runs, _unique_names(runs)):
      plot_run(run, os.path.join(out, f"{name}.png"))
      with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write(markdown(run, f"{name}.png"))
      print(os.path.join(out, f"{name}.md"))
    if len(runs) > 1:
      plot_comparison(runs, os.path.join(out, "comparison.png"))
      print(os.path.join(out, "comparison.png"))
    if args.export_best:
      preset = export_best(runs[0], args.export_best, args.preset)
      print(f"{args.export_best} (preset {preset})")
  except (ReportError, OSError) as e:   # OSError: an output file cannot be written (its text names it)
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
