"""Train a nanochat GPT under a fixed time budget and report val-bpb.

    python -m nanochat_jax.train [--program FILE.json] [--preset gpu|cpu] [--budget-s S] [--data PATH] [--seed N]

Only training steps count toward the budget: the train and eval steps are compiled ahead of time
before the clock starts (compile seconds are reported apart, and capped). The LR multiplier, Muon
momentum and weight decay follow progress = training_time / budget and enter the jitted step as
traced scalars, so nothing recompiles. The budget is wall-clock time on an accelerator; on a CPU it is what
the preset's `cpu_clock` says (`nanochat_jax.env`): this process's CPU time per core, or a fixed cost per step
from the step's compiled FLOPs (`step_cost_s`: the same steps on any machine under any load).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import resource
import sys
import threading
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nanochat_jax import loader
from nanochat_jax import model as nc_model
from nanochat_jax.cache import enable_jax_cache
from nanochat_jax.cli import Parser, budget_arg, seed_arg
from nanochat_jax.config import (LR_SCHEDULES, AttentionSize, MlpSize, ModelConfig, Program, check_seed, muon_momentum,
                                 size_error, weight_decay)
from nanochat_jax.data import RunData, load_run_data
from nanochat_jax.env import DIVERGENCE_LOSS, Preset, budget_clock, check_budget, get_preset, step_cost_s
from nanochat_jax.evaluate import bpb_sums, evaluate_bpb
from nanochat_jax.model import GPT, flops_per_token, num_params, per_token_loss
from nanochat_jax.optimizer import MATRIX_OPTIMIZERS, build_optimizer

# Dense bf16 peak FLOP/s by device kind, for MFU. Unknown accelerators and CPUs use a measured matmul rate.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}
LOG_EVERY_S = 5.0


@dataclasses.dataclass
class RunResult:
  status: str                       # ok | diverged | compile-timeout | aborted
  val_bpb: float | None
  training_seconds: float
  total_seconds: float
  compile_seconds: float
  peak_memory_mb: float
  mfu_percent: float
  total_tokens_M: float
  num_steps: int
  num_params_M: float
  depth: int
  env_digest: str
  loss_curve: list[tuple[float, int, float]] = dataclasses.field(default_factory=list)  # (train s, step, loss)
  note: str = ""
  training_wall_seconds: float = 0.0  # the training steps on the wall clock: above training_seconds = a busy machine

  def summary(self) -> str:
    bpb = f"{self.val_bpb:.6f}" if self.val_bpb is not None else "nan"
    rows = [("status", self.status), ("val_bpb", bpb), ("training_seconds", f"{self.training_seconds:.1f}"),
            ("training_wall_seconds", f"{self.training_wall_seconds:.1f}"),
            ("total_seconds", f"{self.total_seconds:.1f}"), ("compile_seconds", f"{self.compile_seconds:.1f}"),
            ("peak_memory_mb", f"{self.peak_memory_mb:.1f}"), ("mfu_percent", f"{self.mfu_percent:.2f}"),
            ("total_tokens_M", f"{self.total_tokens_M:.1f}"), ("num_steps", str(self.num_steps)),
            ("num_params_M", f"{self.num_params_M:.1f}"), ("depth", str(self.depth)),
            ("env_digest", self.env_digest)]
    return "---\n" + "\n".join(f"{k}: {v}" for k, v in rows)


def on_gpu() -> bool:
  return jax.default_backend() == "gpu"


def peak_flops() -> float:
  kind = jax.devices()[0].device_kind
  for name, flops in PEAK_FLOPS.items():
    if name in kind:
      return flops
  return _measured_matmul_flops()


@functools.cache
def _measured_matmul_flops(n: int = 1024, reps: int = 5) -> float:
  """Best-of-`reps` fp32 matmul rate: the MFU denominator where no nominal peak is known (e.g. CPU)."""
  a = jnp.ones((n, n), jnp.float32)
  mm = jax.jit(lambda x: x @ x)
  mm(a).block_until_ready()
  best = math.inf
  for _ in range(reps):
    t0 = time.perf_counter()
    mm(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best


def peak_memory_mb() -> float:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # host RSS (KiB on Linux)


def data_mesh(devices: int, program: Program | None = None, preset: Preset | None = None) -> Mesh | None:
  """A 1-D "data" mesh over the first `devices` devices (None for one device: plain single-device jit); with a
  program and preset, also checks that the devices split its batches evenly."""
  if devices < 1:
    raise ValueError(f"--devices-per-trial must be >= 1, got {devices}")
  if devices == 1:
    return None
  avail = jax.devices()
  if len(avail) < devices:
    raise ValueError(f"--devices-per-trial {devices}: only {len(avail)} {avail[0].platform} device(s) visible")
  if program is not None and preset is not None:
    rows = program.schedule.device_batch_size
    if rows % devices or preset.eval_batch_rows % devices:
      raise ValueError(f"--devices-per-trial {devices} must divide device_batch_size {rows} and the preset's "
                       f"eval_batch_rows {preset.eval_batch_rows}")
  return Mesh(np.array(avail[:devices]), ("data",))


def batch_sharding(mesh: Mesh | None, rank: int) -> NamedSharding | None:
  """Rows (axis rank-2: the micro-batch rows) split over the mesh; None without a mesh."""
  return None if mesh is None else NamedSharding(mesh, P(*[None] * (rank - 2), "data", None))


def make_steps(graphdef: nnx.GraphDef, tx: Any, token_bytes: jax.Array, mesh: Mesh | None = None):
  """The pure train step (grad accumulation over micro-batches, one optimizer update) and eval step.

  With a mesh, data-parallel: parameters and optimizer state replicated, each batch's rows sharded over the
  devices (XLA inserts the gradient all-reduce), so the update is the one-device update up to fp rounding.
  """

  def loss_fn(params, rows_BxT1):
    model = nnx.merge(graphdef, params)
    logits_BxTxV = model(rows_BxT1[:, :-1])
    return jnp.mean(per_token_loss(logits_BxTxV, rows_BxT1[:, 1:]))

  def train_step(params, opt_state, rows_AxBxT1, lr_mult, momentum, wd):
    def micro(grads, rows_BxT1):
      loss, g = jax.value_and_grad(loss_fn)(params, rows_BxT1)
      return jax.tree.map(jnp.add, grads, g), loss

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, losses_A = jax.lax.scan(micro, zeros, rows_AxBxT1)
    grads = jax.tree.map(lambda g: g / rows_AxBxT1.shape[0], grads)
    updates, opt_state = tx.update(grads, opt_state, params, lr_mult=lr_mult, muon_momentum=momentum,
                                   weight_decay=wd)
    return optax.apply_updates(params, updates), opt_state, jnp.mean(losses_A)

  def eval_step(params, rows_BxT1):
    model = nnx.merge(graphdef, params)
    nats_BxT = per_token_loss(model(rows_BxT1[:, :-1]), rows_BxT1[:, 1:])
    return bpb_sums(nats_BxT, rows_BxT1[:, 1:], token_bytes)

  if mesh is None:
    return jax.jit(train_step, donate_argnums=(0, 1)), jax.jit(eval_step)
  repl = NamedSharding(mesh, P())
  shardings = (repl, repl, batch_sharding(mesh, 3), repl, repl, repl)
  return (jax.jit(train_step, donate_argnums=(0, 1), in_shardings=shardings, out_shardings=repl),
          jax.jit(eval_step, in_shardings=(repl, batch_sharding(mesh, 2)), out_shardings=repl))


def compiled_flops(compiled: Any) -> float:
  """FLOPs of one call of a compiled function, from XLA's cost analysis (0.0 when the backend gives none)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", 0.0))


def compile_with_cap(lower_and_compile: Callable[[], Any], cap_s: float) -> tuple[Any, float]:
  """Compile on a daemon thread; (None, elapsed) if it exceeds the cap (the caller ends the run)."""
  box: dict[str, Any] = {}

  def work():
    try:
      box["out"] = lower_and_compile()
    except BaseException as e:  # re-raised in the caller's thread
      box["err"] = e

  t0 = time.perf_counter()
  th = threading.Thread(target=work, daemon=True)
  th.start()
  th.join(cap_s)
  elapsed = time.perf_counter() - t0
  if "err" in box:
    raise box["err"]
  return box.get("out"), elapsed


def _grouped(batches: Iterator[np.ndarray], accum: int) -> Iterator[np.ndarray]:
  while True:
    yield np.stack([next(batches) for _ in range(accum)])


def mlp_matrices(cfg: ModelConfig) -> int:
  """d_model x hidden matrices in one MLP of variant cfg.mlp, counted on a small abstract instance."""
  d, hidden = 8, 16
  mlp = nnx.eval_shape(lambda: nc_model.MLP_VARIANTS[cfg.mlp](d, hidden, 1.0, nnx.Rngs(0)))
  return round(num_params(mlp) / (d * hidden))  # a bias or gate vector is not a matrix


def check_program(program: Program, preset: Preset, data: RunData) -> None:
  """Everything that can be checked before building and compiling: ValueError naming the field otherwise."""
  program.validate()
  cfg = program.model
  # Looked up at call time, as GPT does: variants may be registered (by plugins) after import.
  for field, registry in (("model.mlp", nc_model.MLP_VARIANTS), ("model.norm", nc_model.NORM_VARIANTS),
                          ("model.attention", nc_model.ATTENTION_VARIANTS), ("model.posenc", nc_model.POSENC_VARIANTS),
                          ("optim.matrix_optimizer", MATRIX_OPTIMIZERS), ("schedule.lr_schedule", LR_SCHEDULES)):
    section, attr = field.split(".")
    name = getattr(getattr(program, section), attr)
    if name not in registry:
      raise ValueError(f"{field}: unknown {attr} {name!r}; known: {', '.join(sorted(registry))}")
  if cfg.sequence_len != preset.seq_len:
    raise ValueError(f"model.sequence_len {cfg.sequence_len} must equal the {preset.name} preset's {preset.seq_len}")
  if cfg.vocab_size < data.vocab_size:
    raise ValueError(f"model.vocab_size {cfg.vocab_size} must cover the tokenizer's {data.vocab_size} tokens")
  # The built-in attention's size (a plugin attention's own size model lives in arrl, which the env can't import).
  too_big = size_error(program, preset.max_params, preset.max_memory_gb, (AttentionSize(), MlpSize(mlp_matrices(cfg))))
  if too_big:
    raise ValueError(f"program too large for the {preset.name} preset: {too_big}")


def train(program: Program, preset: Preset, data: RunData, *, seed: int = 0, budget_s: float | None = None,
          on_progress: Callable[[dict], bool] | None = None, log: Callable[[str], None] = print,
          devices: int = 1, data_seed: int | None = None) -> RunResult:
  """Train `program` for `budget_s` seconds of training steps and evaluate val-bpb.

  `devices` > 1 trains data-parallel on that many devices (`make_steps`): the same batches, budget and
  evaluation, so val-bpb measures the same thing (faster steps only mean more of them in the budget).

  `seed` draws the initialisation and the data order; `data_seed`, when given, the data order instead (to
  measure the two shares of the seed spread apart: benchmarks/seed_spread.py --vary).

  `on_progress(info)` is called after every step with {"t", "progress", "step", "loss"}; returning
  True stops the run with status `aborted` (arrl's early abort).
  """
  t_start = time.perf_counter()
  check_program(program, preset, data)
  budget = check_budget(budget_s if budget_s is not None else preset.budget_s)
  check_seed(seed)
  data_seed = seed if data_seed is None else check_seed(data_seed)
  cfg, sch = program.model, program.schedule
  mesh = data_mesh(devices, program, preset)
  rows = program.schedule.device_batch_size
  dtype = jnp.bfloat16 if on_gpu() else jnp.float32
  model = GPT(cfg, rngs=nnx.Rngs(seed), dtype=dtype)
  graphdef, params = nnx.split(model, nnx.Param)
  n_params = num_params(model)
  del model
  tx = build_optimizer(params, program.optim, cfg.d_model, compute_dtype=dtype)
  opt_state = tx.init(params)
  token_bytes_V = np.zeros(cfg.vocab_size, np.int32)  # ids the tokenizer never emits score 0 bytes
  token_bytes_V[:len(data.token_bytes)] = data.token_bytes
  train_step, eval_step = make_steps(graphdef, tx, jnp.asarray(token_bytes_V), mesh)
  train_put = eval_put = jax.device_put
  if mesh is not None:
    params, opt_state = jax.device_put((params, opt_state), NamedSharding(mesh, P()))
    train_put = functools.partial(jax.device_put, device=batch_sharding(mesh, 3))
    eval_put = functools.partial(jax.device_put, device=batch_sharding(mesh, 2))

  T1 = cfg.sequence_len + 1
  accum = sch.total_batch_tokens // (rows * cfg.sequence_len)
  scalar = jax.ShapeDtypeStruct((), jnp.float32)
  batch_spec = jax.ShapeDtypeStruct((accum, rows, T1), jnp.int32, sharding=batch_sharding(mesh, 3))
  eval_spec = jax.ShapeDtypeStruct((preset.eval_batch_rows, T1), jnp.int32, sharding=batch_sharding(mesh, 2))

  def compile_all():
    return (train_step.lower(params, opt_state, batch_spec, scalar, scalar, scalar).compile(),
            eval_step.lower(params, eval_spec).compile())

  compiled, compile_s = compile_with_cap(compile_all, preset.compile_cap_s)
  common = dict(num_params_M=n_params / 1e6, depth=cfg.depth, env_digest=data.env_digest(preset, budget),
                compile_seconds=compile_s)
  if compiled is None:
    log(f"compile exceeded the cap of {preset.compile_cap_s:.0f}s")
    return RunResult(status="compile-timeout", val_bpb=None, training_seconds=0.0,
                     total_seconds=time.perf_counter() - t_start, peak_memory_mb=peak_memory_mb(), mfu_percent=0.0,
                     total_tokens_M=0.0, num_steps=0, **common)
  train_c, eval_c = compiled
  log(f"compiled in {compile_s:.1f}s; {n_params / 1e6:.1f}M params, {accum} micro-batch(es) of {rows}x{T1 - 1}")

  batches = loader.Prefetcher(_grouped(loader.train_batches(data.train_docs, rows, cfg.sequence_len, data_seed), accum),
                              depth=2, put=train_put)
  flops_step = flops_per_token(cfg) * sch.total_batch_tokens
  status, t_train, step, curve, last_log, dt_ema, t_busy = "ok", 0.0, 0, [], 0.0, 0.0, 0.0
  clock = budget_clock(jax.default_backend())
  fixed_cost = step_cost_s(preset, jax.default_backend(), compiled_flops(train_c))  # None: the clock decides
  t_wall = time.perf_counter()
  try:
    while t_train + 0.5 * dt_ema < budget:  # stop when the next step would overshoot by more than half a step
      progress = t_train / budget
      lr_mult = sch.lr_multiplier(progress)
      rows_AxBxT1 = next(batches)
      t0 = clock()
      params, opt_state, loss = train_c(params, opt_state, rows_AxBxT1, jnp.float32(lr_mult),
                                        jnp.float32(muon_momentum(program.optim, step)),
                                        jnp.float32(weight_decay(program.optim, progress)))
      loss = float(loss)  # device sync: the clock reads finished work
      dt_measured = clock() - t0
      t_busy += dt_measured
      dt = dt_measured if fixed_cost is None else fixed_cost
      t_train += dt
      step += 1
      dt_ema = dt if step == 1 else 0.9 * dt_ema + 0.1 * dt
      curve.append((t_train, step, loss))
      if not math.isfinite(loss) or loss > DIVERGENCE_LOSS:
        status = "diverged"
        log(f"step {step}: loss {loss} -> diverged")
        break
      if on_progress is not None and on_progress({"t": t_train, "progress": t_train / budget, "step": step,
                                                  "loss": loss}):
        status = "aborted"
        log(f"step {step}: aborted by the early-abort policy")
        break
      if t_train - last_log >= LOG_EVERY_S or step == 1:
        last_log = t_train
        tok_s, mfu = sch.total_batch_tokens / dt_measured, 100 * flops_step / dt_measured / peak_flops()
        log(f"step {step:5d} | loss {loss:.4f} | tok/s {tok_s:,.0f} | mfu {mfu:.1f}%"
            f" | left {max(0.0, budget - t_train):.0f}s")
  finally:
    batches.close()
  wall_s = time.perf_counter() - t_wall

  val_bpb = None
  if status == "ok":
    n_eval = max(1, preset.eval_tokens // (preset.eval_batch_rows * cfg.sequence_len))
    val_iter = loader.val_batches(data.val_docs, preset.eval_batch_rows, cfg.sequence_len)
    val_bpb = evaluate_bpb(lambda rows_BxT1: eval_c(params, eval_put(rows_BxT1)), val_iter, n_eval)
  mfu = 100 * flops_step * step / t_busy / peak_flops() if t_busy > 0 else 0.0
  return RunResult(status=status, val_bpb=val_bpb, training_seconds=t_train,
                   total_seconds=time.perf_counter() - t_start, peak_memory_mb=peak_memory_mb(), mfu_percent=mfu,
                   total_tokens_M=step * sch.total_batch_tokens / 1e6, num_steps=step, loss_curve=curve,
                   training_wall_seconds=wall_s, **common)


def default_preset_name() -> str:
  return "gpu" if on_gpu() else "cpu"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  p = Parser(prog="python -m nanochat_jax.train", description=__doc__.split("\n\n")[0])
  p.add_argument("--program", help="training program JSON (default: the preset's program)")
  p.add_argument("--preset", choices=["gpu", "cpu", "tiny"], help="default: gpu if a GPU is present, else cpu")
  p.add_argument("--budget-s", type=budget_arg, help="training seconds (default: the preset's budget)")
  p.add_argument("--data", help="directory or glob of .parquet/.txt/.jsonl shards (default: embedded corpus)")
  p.add_argument("--val-data", help="validation shards (default: the last shard of --data)")
  p.add_argument("--seed", type=seed_arg, default=0, help="an integer in [0, 2**32)")
  p.add_argument("--devices-per-trial", type=int, default=1,
                 help="train data-parallel on this many devices (batch rows sharded, parameters replicated)")
  p.add_argument("--cache-dir", help="tokenizer, token and JAX compilation caches (default: $ARRL_CACHE or "
                                     "~/.cache/arrl)")
  args = p.parse_args(argv)
  if args.devices_per_trial < 1:
    p.error("--devices-per-trial must be >= 1")
  return args


def load_program(path: str | None, preset: Preset) -> Program:
  """The program in JSON file `path` (the preset's when None), validated: ValueError naming the file otherwise."""
  if path is None:
    return preset.program
  try:
    with open(path, "rb") as f:
      program = Program.from_json(f.read())
    program.validate()
  except (OSError, ValueError, TypeError) as e:
    raise ValueError(f"program {path}: {e}") from None
  return program


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    preset = get_preset(args.preset or default_preset_name())
    program = load_program(args.program, preset)  # before the data: a bad program fails without tokenizing
    data = load_run_data(preset, args.data, args.val_data, args.cache_dir)
    try:
      check_program(program, preset, data)
    except ValueError as e:
      raise ValueError(f"program {args.program or f'of the {preset.name} preset'}: {e}") from None
    data_mesh(args.devices_per_trial, program, preset)
  except (ValueError, OSError, RuntimeError, ImportError) as e:  # bad input or environment: one line
    print(f"error: {e}", file=sys.stderr)
    return 2
  enable_jax_cache(args.cache_dir)  # before the first compile: JAX decides once per process whether to use it
  print(f"preset {preset.name} | env {data.env_digest(preset, args.budget_s)} | devices {jax.devices()}",
        flush=True)
  result = train(program, preset, data, seed=args.seed, budget_s=args.budget_s,
                 log=lambda s: print(s, flush=True), devices=args.devices_per_trial)
  print(result.summary(), flush=True)
  return 0 if result.status == "ok" else 1


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.exit(main())
