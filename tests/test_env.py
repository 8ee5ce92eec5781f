"""The frozen environment's budget clock: CPU time on a CPU, wall time on an accelerator."""
from __future__ import annotations

import os
import time

import pytest

from nanochat_jax import env


def _spin(seconds: float) -> None:
  end = time.process_time() + seconds
  while time.process_time() < end:
    pass


def test_cpu_clock_counts_this_process_cpu_seconds_per_core_and_not_time_spent_descheduled(monkeypatch):
  monkeypatch.delenv(env.CORES_ENV, raising=False)
  clock, cores = env.budget_clock("cpu"), len(os.sched_getaffinity(0))
  c0, p0 = clock(), time.process_time()
  _spin(0.2)
  assert clock() - c0 == pytest.approx((time.process_time() - p0) / cores, abs=1e-3)
  c1 = clock()
  time.sleep(0.3)   # what another process taking the core looks like from here: no CPU time of ours
  assert clock() - c1 < 0.3 / 2


def test_granted_cores_come_from_the_executor_else_the_affinity_mask(monkeypatch):
  monkeypatch.setenv(env.CORES_ENV, "3")
  assert env.granted_cores() == 3
  c0, p0 = env.budget_clock("cpu")(), time.process_time()
  _spin(0.1)
  assert env.budget_clock("cpu")() - c0 == pytest.approx((time.process_time() - p0) / 3, abs=1e-3)
  for bad in ("", "0", "x"):
    monkeypatch.setenv(env.CORES_ENV, bad)
    assert env.granted_cores() == len(os.sched_getaffinity(0))


def test_accelerators_count_wall_time():
  assert env.budget_clock("gpu") is time.perf_counter and env.budget_clock("tpu") is time.perf_counter


def test_the_clock_is_part_of_the_environment_digest(monkeypatch):
  preset = env.get_preset("tiny")
  before = env.env_digest(preset, "corpus", "tok")
  monkeypatch.setattr(env, "BUDGET_CLOCK", "wall-v0")
  assert env.env_digest(preset, "corpus", "tok") != before


def test_the_runner_lets_a_cpu_trial_overrun_its_budget_on_the_wall_clock_by_the_slack(tmp_path):
  from arrl.nanochat_objective import NanochatEvaluator
  from arrl.nanochat_space import nanochat_space
  from arrl.runner import TrialResult
  from arrl.trial import EvalContext

  jobs = []

  class Recorder:
    def run(self, job, monitor=None, cancel=None):
      jobs.append(job)
      return TrialResult(trial_id=job.trial_id, status="ok", val_bpb=1.5)

  for on_gpu in (False, True):
    evaluator = NanochatEvaluator(executor=Recorder(), preset="tiny", budget_s=30.0, compile_cap_s=10.0,
                                  env_digest="x", run_dir=str(tmp_path), on_gpu=on_gpu)
    evaluator.evaluate(nanochat_space("tiny").default(), "000001", EvalContext())
  assert env.CPU_CLOCK_WALL_SLACK > 1 and jobs[0].budget_s == 30.0 * env.CPU_CLOCK_WALL_SLACK
  assert jobs[1].budget_s == 30.0   # on a GPU the trial's own clock is the wall clock


def test_local_trials_run_on_gpus_where_the_slots_own_gpus():
  from arrl.parallel import SlotExecutor, plan_slots

  assert SlotExecutor(plan_slots(gpus=["0", "1"])).on_gpu
  assert not SlotExecutor(plan_slots(workers=2, gpus=[], cpus=[0, 1])).on_gpu


def test_a_flops_clock_charges_cpu_steps_their_compiled_flops_and_leaves_accelerators_on_the_wall():
  import dataclasses
  cpu_time, flops = env.get_preset("tiny"), dataclasses.replace(env.get_preset("tiny"), cpu_clock="flops")
  assert env.step_cost_s(flops, "cpu", 4e9) == pytest.approx(4e9 / env.CPU_FLOPS_PER_S)
  assert env.step_cost_s(flops, "gpu", 4e9) is None and env.step_cost_s(cpu_time, "cpu", 4e9) is None
  with pytest.raises(ValueError, match="cost analysis"):
    env.step_cost_s(flops, "cpu", 0.0)
  with pytest.raises(ValueError, match="cpu_clock must be one of"):
    dataclasses.replace(cpu_time, cpu_clock="wall")
  assert env.env_digest(flops, "corpus", "tok") != env.env_digest(cpu_time, "corpus", "tok")


def test_compiled_flops_reads_xla_cost_analysis():
  import jax
  import jax.numpy as jnp

  from nanochat_jax.train import compiled_flops
  x = jax.ShapeDtypeStruct((64, 64), jnp.float32)
  assert compiled_flops(jax.jit(jnp.dot).lower(x, x).compile()) == pytest.approx(2 * 64 ** 3, rel=0.05)
