"""Per-trial overhead of a real `python -m arrl.main` run, read back from its ledger.

    python -m benchmarks.trial_overhead RUN_DIR [--wall-s S] [--out FILE.json]

For each trial: worker start-up, compile, training and the rest (`other_s`: data loading, evaluation,
teardown); the overhead is everything but training. `--wall-s` (the whole arrl.main process, timed by the
caller) adds the loop's own start and end (imports, data and tokenizer, agent set-up) as `outside_trials_s`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from benchmarks.report import emit_json


def trial_overheads(run_dir: str) -> list[dict]:
  path = os.path.join(run_dir, "trials.jsonl")
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  out = []
  for r in records:
    total, train = r.get("total_seconds"), r.get("training_seconds") or 0.0
    startup, compile_s = r.get("startup_seconds") or 0.0, r.get("compile_seconds") or 0.0
    out.append({"trial_id": r["trial_id"], "status": r["status"], "val_bpb": r.get("val_bpb"),
                "num_steps": r.get("num_steps"), "total_s": total, "training_s": train, "startup_s": startup,
                "compile_s": compile_s, "other_s": None if total is None else total - train - startup
                - compile_s, "overhead_s": None if total is None else total - train})
  return out


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.trial_overhead", description=__doc__.split("\n\n")[0])
  p.add_argument("run_dir")
  p.add_argument("--wall-s", type=float, help="wall seconds of the whole arrl.main process")
  p.add_argument("--out", help="also write the JSON here")
  args = p.parse_args(argv)
  try:
    trials = trial_overheads(args.run_dir)
  except (OSError, ValueError, KeyError) as e:
    print(f"error: cannot read the ledger of {args.run_dir}: {e}", file=sys.stderr)
    return 2
  report: dict = {"run_dir": args.run_dir, "trials": trials}
  if args.wall_s is not None:
    report["wall_s"] = args.wall_s
    report["outside_trials_s"] = args.wall_s - sum(t["total_s"] or 0.0 for t in trials)
  emit_json(report, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
