"""Worker slots (arrl.parallel): GPUs and cores split between trials, trials in flight at once (no jax)."""
from __future__ import annotations

import os
import threading

import pytest

from arrl.parallel import Slot, SlotExecutor, plan_slots, visible_gpus
from arrl.runner import TrialJob, WorkerLimits

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_gpus_come_from_cuda_visible_devices():
  assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]
  assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_gpu_slots_never_share_a_gpu():
  slots = plan_slots(gpus=["0", "1", "2", "3", "4"], devices_per_trial=2)   # default: as many as fit
  assert [s.gpus for s in slots] == [("0", "1"), ("2", "3")]
  assert slots[1].env()["CUDA_VISIBLE_DEVICES"] == "2,3"
  assert [s.gpus for s in plan_slots(workers=1, gpus=["0", "1"])] == [("0",)]
  with pytest.raises(ValueError, match=r"--workers 3 x --devices-per-trial 2 needs 6 GPUs, 5 visible"):
    plan_slots(workers=3, gpus=["0", "1", "2", "3", "4"], devices_per_trial=2)


def test_cpu_slots_split_cores_and_thread_counts():
  slots = plan_slots(workers=2, gpus=[], cpus=[0, 1, 2, 3, 4])
  assert [s.cpus for s in slots] == [(0, 1), (2, 3)]
  assert slots[0].env()["OMP_NUM_THREADS"] == "2" and "CUDA_VISIBLE_DEVICES" not in slots[0].env()
  assert slots[0].env()["ARRL_TRIAL_CORES"] == "2"   # the budget clock's divisor (nanochat_jax.env)
  assert plan_slots(gpus=[], cpus=[0, 1]) == [Slot(0)]   # default: one worker with the whole machine
  assert "--xla_force_host_platform_device_count=2" in Slot(0, devices=2).env()["XLA_FLAGS"]
  with pytest.raises(ValueError, match="--workers 3 needs 3 CPU cores"):
    plan_slots(workers=3, gpus=[], cpus=[0, 1])


def test_two_workers_run_at_once_on_their_own_cores(tmp_path):
  cores = sorted(os.sched_getaffinity(0))[:2]
  if len(cores) < 2:
    pytest.skip("needs 2 cores")
  ex = SlotExecutor(plan_slots(workers=2, gpus=[], cpus=cores), WorkerLimits(max_rss_mb=256),
                    jax_cache_dir=None, pythonpath=(TESTS,))
  results = {}

  def run(i: int) -> None:
    job = TrialJob(trial_id=f"t{i}", fn="toy_trials:rendezvous", payload={"dir": str(tmp_path), "n": 2},
                   budget_s=60.0, compile_cap_s=60.0)
    results[i] = ex.run(job)

  threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert [results[i].status for i in range(2)] == ["ok", "ok"], [results[i].error for i in range(2)]
  assert sorted(tuple(results[i].summary["cpus"]) for i in range(2)) == [(cores[0],), (cores[1],)]
  assert {results[i].summary["env"]["OMP_NUM_THREADS"] for i in range(2)} == {"1"}
