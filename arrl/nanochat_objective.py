"""nanochat training as an arrl objective: one isolated worker process per trial.

`run_trial` runs inside the worker (`arrl.worker`); `NanochatEvaluator` runs in the loop and turns a
program tree into a `TrialJob`, with the early-abort watcher comparing against the kept best.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from arrl.abort import AbortPolicy, AbortReference, AbortWatcher
from arrl.loop import EvalResult
from arrl.nanochat_space import to_program
from arrl.plugins import Plugin
from arrl.runner import Executor, Monitor, TrialJob
from arrl.trial import EvalContext, Status
from nanochat_jax.config import MAX_SEED
from nanochat_jax.env import wall_limit_s

TRIAL_FN = "arrl.nanochat_objective:run_trial"
STARTUP_ALLOWANCE_S = 60.0   # interpreter, jax import and cached data load, on top of the compile cap


def run_trial(payload: dict, ctx: Any) -> dict:
  """Worker side: import the run's plugins, train the program under the budget; report progress; honour stops."""
  from arrl import plugins
  from nanochat_jax.cache import enable_jax_cache
  from nanochat_jax.config import Program
  from nanochat_jax.data import load_run_data
  from nanochat_jax.env import get_preset
  from nanochat_jax.model import flops_per_token
  from nanochat_jax.train import peak_flops, train

  plugins.load_for_worker(payload.get("plugins", ()))  # before the model is built: they register its modules
  preset = get_preset(payload["preset"])
  data = load_run_data(preset, payload.get("data"), payload.get("val_data"), payload.get("cache_dir"))
  enable_jax_cache(payload.get("cache_dir"))  # --cache-dir holds the compilation cache too
  program = Program.from_json(payload["program"])
  step_tokens, token_flops = program.schedule.total_batch_tokens, flops_per_token(program.model)

  def on_progress(info: dict) -> bool:
    tok_s = info["step"] * step_tokens / max(info["t"], 1e-9)   # mean over the training time so far
    ctx.progress(t=info["t"], progress=info["progress"], loss=info["loss"], step=info["step"], tok_s=tok_s,
                 mfu=100 * token_flops * tok_s / peak_flops())
    return ctx.should_stop()

  res = train(program, preset, data, seed=payload.get("seed", 0), budget_s=payload["budget_s"],
              on_progress=on_progress, log=lambda s: print(s, flush=True), devices=payload.get("devices", 1))
  print(res.summary(), flush=True)
  out = dataclasses.asdict(res)
  del out["loss_curve"]  # the parent rebuilt it from the progress events
  return out


@dataclasses.dataclass
class NanochatEvaluator:
  executor: Executor
  preset: str
  budget_s: float
  compile_cap_s: float
  env_digest: str
  run_dir: str
  data: str | None = None
  val_data: str | None = None
  cache_dir: str | None = None
  seed: int = 0
  devices: int = 1             # devices per trial (data-parallel); the executor's slots provide them
  on_gpu: bool = False         # the executor's trials train on GPUs: their budget is wall time (else CPU time)
  abort: AbortPolicy = AbortPolicy()
  cancel: Any = None           # callable: True abandons the trial in flight (second Ctrl-C)
  watch: Callable[[str, Monitor], Monitor] | None = None   # wraps the abort watcher to see events too (display)
  plugins: tuple[Plugin, ...] = ()  # imported by every worker (arrl.plugins)

  def evaluate(self, tree: Any, trial_id: str, context: EvalContext, replicate: int = 0) -> EvalResult:
    seed = (self.seed + replicate) % MAX_SEED   # run r of a program sees another data order (and initialisation)
    payload = {"program": to_program(tree).to_json(), "preset": self.preset, "budget_s": self.budget_s,
               "seed": seed, "devices": self.devices, "data": self.data, "val_data": self.val_data,
               "cache_dir": self.cache_dir, "plugins": [{"spec": p.spec, "digest": p.digest} for p in self.plugins]}
    os.makedirs(os.path.join(self.run_dir, "logs"), exist_ok=True)
    job = TrialJob(trial_id=trial_id, fn=TRIAL_FN, payload=payload, budget_s=wall_limit_s(self.budget_s, self.on_gpu),
                   compile_cap_s=self.compile_cap_s + STARTUP_ALLOWANCE_S,
                   eval_allowance_s=max(60.0, 0.5 * self.budget_s),
                   log_path=os.path.join(self.run_dir, "logs", f"{trial_id}.log"))
    monitor = AbortWatcher(self.abort, AbortReference.from_context(context))
    if self.watch is not None:
      monitor = self.watch(trial_id, monitor)
    res = self.executor.run(job, monitor=monitor, cancel=self.cancel)
    if res.env_digest is not None and res.env_digest != self.env_digest:
      return EvalResult(status=Status.CRASH, score=None, metrics={**res.ledger_fields(), "seed": seed, "error": (
          f"worker saw environment {res.env_digest}, loop expects {self.env_digest}")})
    return EvalResult(status=res.status, score=res.val_bpb if res.status == Status.OK else None,
                      metrics={**res.ledger_fields(), "seed": seed})
