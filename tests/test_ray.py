"""RayExecutor on a local Ray cluster (ray.init(num_cpus=2)) running real worker processes (toy trials, no jax)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from arrl.abort import AbortPolicy, AbortWatcher
from arrl.runner import TrialCancelled, TrialJob, WorkerLimits

from test_runner import _reference, alive, wait_file

ray = pytest.importorskip("ray")
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def executor():
  from arrl.ray_executor import RayExecutor
  ex = RayExecutor(num_cpus=1, limits=WorkerLimits(max_rss_mb=256, stop_grace_s=1.0, exit_grace_s=0.5),
                   pythonpath=(TESTS,), init_kwargs={"num_cpus": 2, "include_dashboard": False})
  yield ex
  ray.shutdown()


def job(fn: str, **kw) -> TrialJob:
  return TrialJob(trial_id=kw.pop("trial_id", fn), fn=f"toy_trials:{fn}", **{"budget_s": 30.0, "compile_cap_s": 60.0,
                                                                             **kw})


def test_trial_result_and_log_come_back(executor, tmp_path):
  log = tmp_path / "t.log"
  r = executor.run(job("ok", payload={"steps": 10, "val_bpb": 0.987}, log_path=str(log)))
  assert r.status == "ok" and r.val_bpb == 0.987 and r.num_steps == 10 and len(r.loss_curve) == 10
  assert "hello from the toy trial" in log.read_text() and executor.workers == 2


def test_segfault_is_a_crash(executor):
  r = executor.run(job("segfault"))
  assert r.status == "crash" and "SIGSEGV" in r.error


def test_progress_reaches_the_driver_and_early_abort_stops_the_trial(executor):
  watcher = AbortWatcher(AbortPolicy(), _reference())
  r = executor.run(job("abortable", payload={"steps": 150, "dt": 0.02}), monitor=watcher)
  assert r.status == "aborted", (r.status, r.error, r.log_tail)
  assert r.abort is watcher.record and r.abort["stop"] and r.num_steps < 150


class _Record:
  record = None

  def __init__(self):
    self.progress = []

  def observe(self, event):
    self.progress.append(event["progress"])
    return False


def test_every_progress_event_reaches_the_monitor_in_order(executor):
  # 400 events in a burst and the task returns at once: the last ones reach the hub just before the result does
  monitor = _Record()
  r = executor.run(job("ok", payload={"steps": 400}), monitor=monitor)
  assert r.status == "ok" and monitor.progress == [i / 400 for i in range(1, 401)]


def test_a_dead_hub_costs_the_progress_events_not_the_result():
  from arrl.ray_executor import RayExecutor
  ex = RayExecutor(num_cpus=1, limits=WorkerLimits(max_rss_mb=256), pythonpath=(TESTS,))   # its own hub
  ray.kill(ex.hub)
  with pytest.raises(ray.exceptions.RayActorError):   # dead before the trial starts
    ray.get(ex.hub.pull_all.remote())
  monitor = _Record()
  r = ex.run(job("ok", payload={"steps": 50, "val_bpb": 0.9}), monitor=monitor)
  assert r.status == "ok" and r.val_bpb == 0.9 and len(r.loss_curve) == 50 and monitor.progress == []


def test_the_node_pushes_progress_in_batches(monkeypatch):
  from arrl import ray_executor

  class Reply:
    def __init__(self, stop):
      self.stop = stop

  class FakeRay:
    exceptions = ray.exceptions

    def wait(self, refs, num_returns, timeout):
      return refs, []

    def get(self, refs):
      if hub_dead:
        raise ray.exceptions.RayError("the hub died")
      return [r.stop for r in refs]

  pushes, clock, hub_dead = [], [0.0], False

  class Hub:
    class push:
      @staticmethod
      def remote(trial_id, events):
        pushes.append([e["i"] for e in events])
        return Reply(stop=len(pushes) == 3)

  monkeypatch.setattr(ray_executor.time, "monotonic", lambda: clock[0])
  forward = ray_executor._Forward(FakeRay(), Hub, "t")
  stops = []
  for i in range(23):   # an event every 0.03 s: a push once 0.1 s have passed since the last, the first at once
    stops.append(forward.observe({"i": i}))
    clock[0] += 0.03
  hub_dead = True
  forward.close()      # pushes the rest; its wait fails, which must not raise (the trial's result still goes back)
  assert pushes == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20], [21, 22]]
  assert stops.index(True) == 8 and all(stops[8:])   # the stop in the third push's reply holds from then on


def test_killed_ray_worker_is_a_recorded_crash(executor, tmp_path):
  pid_file = tmp_path / "pids"
  box = {}
  th = threading.Thread(target=lambda: box.update(r=executor.run(job("hang_with_pids",
                                                                     payload={"pid_file": str(pid_file)}))))
  th.start()
  worker, ray_worker = map(int, wait_file(str(pid_file), timeout=60).split())
  os.kill(ray_worker, signal.SIGKILL)
  th.join(60)
  r = box["r"]
  assert r.status == "crash" and r.error.startswith("ray: "), r.error
  end = time.monotonic() + 10
  while alive(worker) and time.monotonic() < end:
    time.sleep(0.05)
  assert not alive(worker)   # the trial's process died with its Ray worker (no orphan on the GPU)


def test_two_trials_run_at_once(executor, tmp_path):
  results = {}
  threads = [threading.Thread(target=lambda i=i: results.update({i: executor.run(job(
      "rendezvous", trial_id=f"r{i}", payload={"dir": str(tmp_path), "n": 2}))})) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(120)
  assert [results[i].status for i in range(2)] == ["ok", "ok"], [results[i].error for i in range(2)]


def test_cancel_kills_the_task(executor, tmp_path):
  pid_file = tmp_path / "pids"
  with pytest.raises(TrialCancelled):
    executor.run(job("hang_with_pids", payload={"pid_file": str(pid_file)}), cancel=pid_file.exists)
  worker = int(pid_file.read_text().split()[0])
  end = time.monotonic() + 10
  while alive(worker) and time.monotonic() < end:
    time.sleep(0.05)
  assert not alive(worker)


def test_missing_ray_gives_the_install_hint(monkeypatch):
  from arrl.ray_executor import import_ray
  monkeypatch.setitem(sys.modules, "ray", None)
  with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
    import_ray()


def test_main_builds_a_ray_executor_sized_by_the_cluster(executor):
  from arrl.main import build_executor, parse_args
  from arrl.ray_executor import RayExecutor
  args = parse_args(["--executor", "ray", "--preset", "cpu"])
  ex, workers = build_executor(args)   # joins the Ray instance this process already runs
  assert isinstance(ex, RayExecutor) and workers == 2 and ex.num_gpus == 0 and not ex.on_gpu
  args = parse_args(["--executor", "ray", "--preset", "cpu", "--workers", "1", "--devices-per-trial", "2"])
  ex, workers = build_executor(args)
  assert workers == 1 and ex.num_cpus == 2 and "device_count=2" in ex.env["XLA_FLAGS"]
