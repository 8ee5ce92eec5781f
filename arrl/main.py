"""arrl: an agent that researches nanochat training programs on its own, until told to stop.

    python -m arrl.main                      # GPU: gpu preset, 300 s trials; no GPU: cpu preset, short trials
    python -m arrl.main --run-dir runs/x     # resume that run exactly (agent, RNG, current program, ledger)

Stop it with Ctrl-C (finishes the trial in flight, saves, exits 0; a second Ctrl-C abandons that trial),
`touch RUN_DIR/STOP`, --max-experiments or --max-hours; it also stops when the search has converged.

A run directory stores the flags that define its run in RUN_DIR/run.json (preset, budget, agent, seed, data,
keep rule, ...): a bare `--run-dir` resumes with them; only --max-experiments, --max-hours, --force and
--cache-dir may differ on resume. One process at a time uses a run directory (RUN_DIR/lock).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

from arrl import tree as tree_lib
from arrl.abort import AbortPolicy
from arrl.agents import AGENTS, SHIPPED_NETWORK, make_agent, run_dir_options
from arrl.display import RunDisplay
from arrl.io import write_json_atomic
from arrl.keep import KeepRule
from arrl.ledger import LEDGER_FILE, LedgerError
from arrl.lock import RunDirLock
from arrl.loop import BASELINE_FAILED, STATE_FILE, LoopConfig, LoopError, SearchLoop
from arrl.nanochat_objective import NanochatEvaluator
from arrl.nanochat_space import from_program, nanochat_space
from arrl.oracle import STOP_FILE, Oracle, StopSignals
from arrl.plugins import load_run_plugins, record as record_plugins
from arrl.parallel import Slot, SlotExecutor, plan_slots
from arrl.runner import Executor, TrialCancelled
from arrl.space import Space
from nanochat_jax.cli import Parser, budget_arg, seed_arg
from nanochat_jax.config import Program, check_seed
from nanochat_jax.env import CORES_ENV, check_budget

DEFAULT_AGENT = "ppo"
_USER_PREALLOCATE = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")  # before default_preset() changes it
RUN_FILE = "run.json"
# Flags that define a run, stored in RUN_DIR/run.json (flag dest -> accepted JSON types). The others
# (--max-experiments, --max-hours, --force, --cache-dir, --workers, --executor, ...) may change on every resume.
RUN_FLAGS: dict[str, tuple[type, ...]] = {
    "preset": (str,), "budget_s": (int, float), "agent": (str,), "seed": (int,), "data": (str, type(None)),
    "val_data": (str, type(None)), "agent_init": (str, type(None)), "noise_repeats": (int,),
    "false_keep": (int, float), "confirm": (int,), "patience": (int,), "no_abort": (bool,), "remeasure": (bool,)}
_PATH_FLAGS = ("data", "val_data", "agent_init")   # stored absolute: a resume from another directory finds them
_INIT_NAMES = (SHIPPED_NETWORK, "none")                # --agent-init values that are not paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  p = Parser(prog="python -m arrl.main", description=__doc__.split("\n\n")[0],
             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--preset", choices=["cpu", "gpu", "tiny"], help="environment preset (default: gpu if a GPU is present)")
  p.add_argument("--budget-s", type=budget_arg, help="training seconds per trial (default: the preset's)")
  p.add_argument("--max-experiments", type=int, help="stop after this many trials have run (default: no limit)")
  p.add_argument("--max-hours", type=float, help="stop after this many hours of trials (default: no limit)")
  p.add_argument("--run-dir", help="run directory; an existing one is resumed (default: runs/<time>-<preset>)")
  p.add_argument("--agent", default=DEFAULT_AGENT, help=f"search agent: {', '.join(sorted(AGENTS))}")
  p.add_argument("--seed", type=seed_arg, default=0,
                 help="seed of the agent and of the trials' training (run r of a program: seed + r)")
  p.add_argument("--agent-init", help="where the ppo network starts: 'pretrained' (default: the meta-trained one "
                                      "shipped in arrl/ppo/pretrained), 'none' (from scratch) or an earlier run's RUN_DIR/ppo")
  p.add_argument("--data", help="directory or glob of .parquet/.txt/.jsonl shards (default: embedded corpus)")
  p.add_argument("--val-data", help="validation shards (default: the last shard of --data)")
  p.add_argument("--noise-repeats", type=int, default=3,
                 help="baseline runs that estimate the noise sigma (3 gives the keep test 2 degrees of freedom)")
  p.add_argument("--false-keep", type=float, default=0.05,
                 help="the keep test's chance of keeping a candidate that is no better than the best")
  p.add_argument("--confirm", type=int, default=1,
                 help="extra runs (other data-order seeds) of a candidate that passes the keep test before it is kept")
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
  p.add_argument("--cache-dir",
                 help="tokenizer, token and JAX compilation caches (default: $ARRL_CACHE or ~/.cache/arrl)")
  p.add_argument("--workers", type=int, help="trials in flight at once (default: local, one per --devices-per-trial "
                 "GPUs, 1 without GPU; ray, what the cluster holds)")
  p.add_argument("--devices-per-trial", type=int, default=1, help="devices one trial trains on (data-parallel)")
  p.add_argument("--executor", choices=["local", "ray"], default="local", help="where trials run")
  p.add_argument("--ray-address", help="Ray cluster to join, e.g. HEAD_IP:6379 or auto (default: a local Ray)")
  args = p.parse_args(argv)
  for action in p._actions:   # parse again without defaults: which flags did the user give?
    action.default = argparse.SUPPRESS
  args.explicit = set(vars(p.parse_args(argv)))
  for name in ("workers", "devices_per_trial"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1")
  if args.ray_address and args.executor != "ray":
    p.error("--ray-address needs --executor ray")
  for name in ("max_experiments", "noise_repeats"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1")
  if args.max_hours is not None and not 0 < args.max_hours < math.inf:
    p.error(f"--max-hours must be finite and > 0, got {args.max_hours}")
  if args.confirm < 0:
    p.error("--confirm must be >= 0")
  if not 0 < args.false_keep < 1:
    p.error("--false-keep must be in (0, 1)")
  if args.agent not in AGENTS:
    p.error(f"unknown --agent {args.agent!r}; choose one of: {', '.join(sorted(AGENTS))}")
  return args


def _flag(name: str) -> str:
  return "--" + name.replace("_", "-")


def apply_run_config(args: argparse.Namespace) -> None:
  """Takes the run-defining flags from RUN_DIR/run.json when it exists; a flag given with another value is an
  error (one line). Checks --agent-init. Creates nothing."""
  for name in _PATH_FLAGS:
    if getattr(args, name) and getattr(args, name) not in _INIT_NAMES:
      setattr(args, name, os.path.abspath(getattr(args, name)))
  path = os.path.join(args.run_dir, RUN_FILE) if args.run_dir else None
  if path and os.path.isfile(path):
    try:
      with open(path) as f:
        stored = json.load(f)
    except (OSError, ValueError) as e:
      raise ValueError(f"cannot read {path}: {e}") from None
    if not isinstance(stored, dict) or set(stored) != set(RUN_FLAGS):
      raise ValueError(f"{path}: expected an object with exactly the keys {', '.join(RUN_FLAGS)}")
    for name, types in RUN_FLAGS.items():
      value = stored[name]
      if (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
          or (isinstance(value, float) and not math.isfinite(value))):
        raise ValueError(f"{path}: {name} has the wrong type or is not finite ({value!r:.60})")
      given = getattr(args, name)
      if name in args.explicit and given != value:
        raise ValueError(f"{_flag(name)} {given} differs from this run's {value} ({path}); omit it to resume "
                         "with the stored value, or start a new --run-dir")
      setattr(args, name, value)
    try:  # the stored values pass the same checks as the flags
      check_budget(args.budget_s)
      check_seed(args.seed)
      LoopConfig(noise_repeats=args.noise_repeats, false_keep=args.false_keep, confirm=args.confirm)
    except ValueError as e:
      raise ValueError(f"{path}: {e}") from None
  if "agent_init" in args.explicit:   # a stored one was checked when the run began
    if args.agent != "ppo":
      raise ValueError(f"--agent-init only applies to --agent ppo (this run's agent is {args.agent})")
    if args.agent_init not in _INIT_NAMES and not os.path.isdir(args.agent_init):
      raise ValueError(f"--agent-init {args.agent_init}: no such directory (give an earlier run's RUN_DIR/ppo)")


def save_run_config(args: argparse.Namespace) -> None:
  path = os.path.join(args.run_dir, RUN_FILE)
  if not os.path.exists(path):
    write_json_atomic(path, {name: getattr(args, name) for name in RUN_FLAGS})


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


def build_executor(args: argparse.Namespace) -> tuple[Executor, int]:
  """The trial executor and how many trials it runs at once."""
  if args.executor == "ray":
    from arrl.ray_executor import RayExecutor
    k, env = args.devices_per_trial, {}
    if _USER_PREALLOCATE is not None:
      env["XLA_PYTHON_CLIENT_PREALLOCATE"] = _USER_PREALLOCATE
    if args.preset == "gpu":   # Ray grants each task its GPUs (CUDA_VISIBLE_DEVICES)
      ex = RayExecutor(args.ray_address, num_cpus=1, num_gpus=k, env=env)
    else:                      # CPU trials: k host devices on k logical CPUs, and a budget clock of k cores
      env.update(Slot(0, devices=k).env(), **{CORES_ENV: str(k)})
      ex = RayExecutor(args.ray_address, num_cpus=k, env=env)
    return ex, args.workers or ex.workers
  slots = plan_slots(args.workers, args.devices_per_trial)
  return SlotExecutor(slots, env=worker_env()), len(slots)


def build_loop(args: argparse.Namespace, signals: StopSignals, display: RunDisplay | None) -> SearchLoop:
  from nanochat_jax.data import load_run_data
  from nanochat_jax.env import get_preset

  preset = get_preset(args.preset)
  args.budget_s = budget = args.budget_s or preset.budget_s
  plugins = load_run_plugins(args.plugin, args.run_dir, args.force)  # before the space: they extend it
  space = nanochat_space(preset)
  if args.initial and any(os.path.exists(os.path.join(args.run_dir, f)) for f in (STATE_FILE, LEDGER_FILE)):
    raise ValueError(f"--initial only starts a new run, and {args.run_dir} has one: resume it without --initial, "
                     "or start a new --run-dir")
  initial = load_initial(args.initial, space, preset.program) if args.initial else None
  print(f"preparing data for preset {preset.name} ...", file=sys.stderr, flush=True)
  data = load_run_data(preset, args.data, args.val_data, args.cache_dir)  # warms the cache workers read
  digest = data.env_digest(preset, budget)
  executor, workers = build_executor(args)
  evaluator = NanochatEvaluator(
      executor=executor, devices=args.devices_per_trial, on_gpu=executor.on_gpu, preset=preset.name,
      budget_s=budget,
      compile_cap_s=preset.compile_cap_s,
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
    agent_kwargs["init_from"] = args.agent_init or SHIPPED_NETWORK
  loop = SearchLoop(space, evaluator, make_agent(args.agent, seed=args.seed, **agent_kwargs),
                    args.run_dir,
                    oracle, LoopConfig(noise_repeats=args.noise_repeats, false_keep=args.false_keep,
                                       confirm=args.confirm, remeasure=args.remeasure),
                    initial=initial, force=args.force, on_trial=display.trial if display else None,
                    workers=workers)
  record_plugins(args.run_dir, plugins)
  return loop


def _best_line(loop: SearchLoop) -> str:
  if loop.best_score is not None:
    return f"best_val_bpb: {loop.best_score:.6f}"
  done = loop.baseline_scores   # stopped inside the baseline's noise repeats: say so, with what was measured
  mean = f", their mean {sum(done) / len(done):.6f}" if done else ""
  return (f"best_val_bpb: nan (the baseline is incomplete: {len(done)} of {loop.config.noise_repeats} repeats{mean}; "
          "no candidate was tried)")


def final_report(loop: SearchLoop, reason: str) -> str:
  recs = loop.ledger.records()
  lines = ["---", f"stop_reason: {reason}", f"trials: {len(recs)}", f"executed: {loop.executed}",
           f"kept: {sum(r.kept for r in recs)}", _best_line(loop),
           f"sigma: {loop.noise().describe()}", f"keep_rule: {KeepRule(loop.config.false_keep).describe()}",
           f"confirm_runs: {loop.config.confirm}", f"hours: {loop.elapsed_s / 3600:.3f}",
           f"best_program: {tree_lib.diff(loop.space.default(), loop.current) or 'the default program'}",
           f"run_dir: {loop.run_dir}"]
  return "\n".join(lines)


def _run(args: argparse.Namespace, signals: StopSignals, created: bool) -> int:
  display = RunDisplay(args.max_experiments, args.max_hours)
  try:
    if os.path.exists(os.path.join(args.run_dir, STOP_FILE)):
      raise ValueError(f"{os.path.join(args.run_dir, STOP_FILE)} exists from an earlier stop; remove it to continue")
    loop = build_loop(args, signals, display)
    save_run_config(args)
  except (ValueError, OSError, RuntimeError, ImportError, LedgerError) as e:
    print(f"error: {e}", file=sys.stderr)
    if created:  # leave no half-made run directory behind
      shutil.rmtree(args.run_dir, ignore_errors=True)
    return 2
  print(f"run {loop.run_dir} | agent {args.agent} | env {loop.evaluator.env_digest} | "
        f"{len(loop.ledger)} trials so far" + (f" | {loop.workers} workers" if loop.workers > 1 else ""),
        file=sys.stderr, flush=True)
  display.attach(loop)
  try:
    reason = loop.run()
  except TrialCancelled:
    reason = "signal (trial in flight abandoned; it reruns on resume)"
  except LoopError as e:
    display.close()
    print(f"error: {e}", file=sys.stderr)
    return 2
  finally:
    display.close()
  print(final_report(loop, reason), flush=True)
  if reason.startswith(BASELINE_FAILED):
    print(f"error: {reason}", file=sys.stderr)
    return 1
  return 0


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  with StopSignals() as signals:
    try:
      apply_run_config(args)
      args.preset = args.preset or default_preset()
      if args.run_dir is None:
        args.run_dir = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + f"-{args.preset}-{args.agent}")
      if os.path.exists(args.run_dir) and not os.path.isdir(args.run_dir):
        raise ValueError(f"--run-dir {args.run_dir} exists and is not a directory")
      created = not os.path.exists(args.run_dir)
      lock = RunDirLock(args.run_dir).acquire()
    except (ValueError, OSError, RuntimeError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    try:
      return _run(args, signals, created)
    finally:
      lock.release()


if __name__ == "__main__":
  sys.exit(main())
