"""arrl: an agent that researches nanochat training programs on its own, until told to stop.

    python -m arrl.main                      # GPU: gpu preset, 300 s trials; no GPU: cpu preset, short trials
    python -m arrl.main --run-dir runs/x     # resume that run exactly (agent, RNG, current program, ledger)

Stop it with Ctrl-C (finishes the trial in flight, saves, exits 0; a second Ctrl-C abandons that trial),
`touch RUN_DIR/STOP`, --max-experiments or --max-hours; it also stops when the search has converged.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from arrl import tree as tree_lib
from arrl.abort import AbortPolicy
from arrl.agents import AGENTS, make_agent, run_dir_options
from arrl.display import RunDisplay
from arrl.ledger import LedgerError
from arrl.loop import LoopConfig, SearchLoop
from arrl.nanochat_objective import NanochatEvaluator
from arrl.nanochat_space import from_program, nanochat_space
from arrl.oracle import Oracle, StopSignals
from arrl.plugins import load_run_plugins, record as record_plugins
from arrl.runner import LocalProcessExecutor, TrialCancelled
from arrl.space import Space
from nanochat_jax.config import Program

DEFAULT_AGENT = "ppo"
_USER_PREALLOCATE = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")  # before default_preset() changes it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m arrl.main", description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--preset", choices=["cpu", "gpu", "tiny"], help="environment preset (default: gpu if a GPU is present)")
  p.add_argument("--budget-s", type=float, help="training seconds per trial (default: the preset's)")
  p.add_argument("--max-experiments", type=int, help="stop after this many trials have run (default: no limit)")
  p.add_argument("--max-hours", type=float, help="stop after this many hours of trials (default: no limit)")
  p.add_argument("--run-dir", help="run directory; an existing one is resumed (default: runs/<time>-<preset>)")
  p.add_argument("--agent", default=DEFAULT_AGENT, help=f"search agent: {', '.join(sorted(AGENTS))}")
  p.add_argument("--seed", type=int, default=0, help="seed of the agent and of every trial's training")
  p.add_argument("--agent-init", help="warm-start the ppo agent's network from an earlier run's RUN_DIR/ppo")
  p.add_argument("--data", help="directory or glob of .parquet/.txt/.jsonl shards (default: embedded corpus)")
  p.add_argument("--val-data", help="validation shards (default: the last shard of --data)")
  p.add_argument("--noise-repeats", type=int, default=2, help="baseline runs that estimate the noise sigma")
  p.add_argument("--keep-k", type=float, default=2.0, help="keep a candidate iff it beats the best by k*sigma")
  p.add_argument("--patience", type=int, default=50,
                 help="converged: no kept improvement in this many trials (and low policy entropy); 0 = never")
  p.add_argument("--no-abort", action="store_true", help="disable early abort of hopeless trials")
  p.add_argument("--remeasure", action="store_true", help="re-run programs already measured in this run")
  p.add_argument("--force", action="store_true", help="resume even if the frozen environment or a plugin changed")
  p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                 help="module name or .py file that registers search-space variants (repeatable; see arrl.plugins)")
  p.add_argument("--initial", metavar="PROGRAM.json",
                 help="start a new run (and its noise baselines) from this program instead of the preset's: "
                      "Program JSON whose missing fields keep the preset's values, or a ledger 'program' tree")
  p.add_argument("--cache-dir", help="tokenizer/token cache (default: $ARRL_CACHE or ~/.cache/arrl)")
  args = p.parse_args(argv)
  for name in ("max_experiments", "noise_repeats"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1")
  for name in ("budget_s", "max_hours"):
    if getattr(args, name) is not None and getattr(args, name) <= 0:
      p.error(f"--{name.replace('_', '-')} must be > 0")
  if args.agent not in AGENTS:
    p.error(f"unknown --agent {args.agent!r}; choose one of: {', '.join(sorted(AGENTS))}")
  return args


def default_preset() -> str:
  # The loop process only runs the agent (on CPU): it must not reserve the GPU memory the trial workers need.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  import jax  # deferred: `--help` and argument errors stay instant
  return "gpu" if jax.default_backend() == "gpu" else "cpu"


def worker_env() -> dict[str, str]:
  """Trial workers get the GPU memory behaviour the user asked for (default: XLA preallocation)."""
  env = dict(os.environ)
  env.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
  if _USER_PREALLOCATE is not None:
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = _USER_PREALLOCATE
  return env


def load_initial(path: str, space: Space, preset_program: Program) -> tree_lib.Node:
  """The tree of --initial: a Program JSON laid over the preset's program, or a tree (a ledger's 'program')."""
  try:
    with open(path) as f:
      text = f.read()
    given = json.loads(text)
    if not isinstance(given, dict):
      raise ValueError("expected a JSON object (a Program or a program tree)")
    if "kind" in given:
      tree = tree_lib.from_json(text)
    else:
      merged = preset_program.to_dict()
      for section, fields in given.items():
        if not isinstance(fields, dict):
          raise ValueError(f"section {section!r} must be an object of fields")
        merged.setdefault(section, {}).update(fields)
      tree = from_program(Program.from_dict(merged))
    space.validate(tree)
  except json.JSONDecodeError as e:
    raise ValueError(f"--initial {path}: not JSON ({e})") from None
  except (OSError, ValueError, TypeError) as e:
    raise ValueError(f"--initial {path}: {e}") from None
  return tree


def build_loop(args: argparse.Namespace, signals: StopSignals, display: RunDisplay | None) -> SearchLoop:
  from nanochat_jax.data import load_run_data
  from nanochat_jax.env import get_preset

  preset = get_preset(args.preset)
  budget = args.budget_s or preset.budget_s
  if args.run_dir is None:
    args.run_dir = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + f"-{preset.name}-{args.agent}")
  if os.path.exists(args.run_dir) and not os.path.isdir(args.run_dir):
    raise ValueError(f"--run-dir {args.run_dir} exists and is not a directory")
  plugins = load_run_plugins(args.plugin, args.run_dir, args.force)  # before the space: they extend it
  space = nanochat_space(preset)
  initial = load_initial(args.initial, space, preset.program) if args.initial else None
  print(f"preparing data for preset {preset.name} ...", file=sys.stderr, flush=True)
  data = load_run_data(preset, args.data, args.val_data, args.cache_dir)  # warms the cache workers read
  digest = data.env_digest(preset, budget)
  evaluator = NanochatEvaluator(
      executor=LocalProcessExecutor(env=worker_env()), preset=preset.name, budget_s=budget, compile_cap_s=preset.compile_cap_s,
      env_digest=digest, run_dir=args.run_dir, data=args.data, val_data=args.val_data, cache_dir=args.cache_dir,
      seed=args.seed, abort=AbortPolicy(enabled=not args.no_abort), cancel=lambda: signals.abandon_requested,
      watch=display.monitor if display else None, plugins=tuple(plugins))
  oracle = Oracle(max_experiments=args.max_experiments, max_hours=args.max_hours,
                  patience=args.patience or None, run_dir=args.run_dir, signals=signals)
  # Random programs of the full nanochat space are mostly hopeless: evolution starts from one-edit mutants.
  agent_kwargs = run_dir_options(args.agent, args.run_dir)
  if args.agent == "evolution":
    agent_kwargs["init"] = "mutate"
  if args.agent == "ppo":
    agent_kwargs["init_from"] = args.agent_init
  loop = SearchLoop(space, evaluator, make_agent(args.agent, seed=args.seed, **agent_kwargs),
                    args.run_dir,
                    oracle, LoopConfig(noise_repeats=args.noise_repeats, keep_k=args.keep_k,
                                       remeasure=args.remeasure),
                    initial=initial, force=args.force, on_trial=display.trial if display else None)
  try:  # a resumed run's program must still fit the space (same plugins, same Program fields)
    space.validate(loop.current)
  except ValueError as e:
    raise ValueError(f"{args.run_dir}: the run's current program does not fit this space ({e}); "
                     "use a new --run-dir") from None
  record_plugins(args.run_dir, plugins)
  return loop


def final_report(loop: SearchLoop, reason: str) -> str:
  recs = loop.ledger.records()
  lines = ["---", f"stop_reason: {reason}", f"trials: {len(recs)}", f"executed: {loop.executed}",
           f"kept: {sum(bool(r.get('kept')) for r in recs)}",
           f"best_val_bpb: {loop.best_score:.6f}" if loop.best_score is not None else "best_val_bpb: nan",
           f"sigma: {loop.sigma:.6f}", f"hours: {loop.elapsed_s / 3600:.3f}",
           f"best_program: {tree_lib.diff(loop.space.default(), loop.current) or 'the default program'}",
           f"run_dir: {loop.run_dir}"]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  args.preset = args.preset or default_preset()
  with StopSignals() as signals:
    try:
      display = RunDisplay(args.max_experiments, args.max_hours)
      loop = build_loop(args, signals, display)
    except (ValueError, OSError, RuntimeError, ImportError, LedgerError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    print(f"run {loop.run_dir} | agent {args.agent} | env {loop.evaluator.env_digest} | "
          f"{len(loop.ledger)} trials so far", file=sys.stderr, flush=True)
    display.attach(loop)
    try:
      reason = loop.run()
    except TrialCancelled:
      reason = "signal (trial in flight abandoned; it reruns on resume)"
    finally:
      display.close()
  print(final_report(loop, reason), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
