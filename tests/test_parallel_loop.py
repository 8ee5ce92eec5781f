"""The asynchronous loop (workers > 1): trials at once, no batch barrier, crash safety with several in flight."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import arrl.search
from loop_driver import SPACE, objective

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def records(run_dir) -> list[dict]:
  with open(os.path.join(run_dir, "trials.jsonl")) as f:
    return [json.loads(line) for line in f]


class Gate:
  """An objective that records how many calls overlap; the first call waits until a second one has started."""

  def __init__(self):
    self.lock, self.active, self.peak, self.calls = threading.Lock(), 0, 0, 0
    self.second = threading.Event()

  def __call__(self, p: dict) -> float:
    with self.lock:
      self.active += 1
      self.calls += 1
      self.peak = max(self.peak, self.active)
      if self.calls >= 2:
        self.second.set()
    try:
      if not self.second.wait(30):
        raise TimeoutError("no second trial started while the first was running")
      time.sleep(0.01)
      return objective(p)
    finally:
      with self.lock:
        self.active -= 1


def test_two_workers_run_trials_at_once_with_baselines_in_parallel(tmp_path):
  gate = Gate()
  res = arrl.search.search(SPACE, gate, agent="evolution", max_trials=12, seed=0, workers=2, noise_repeats=2,
                           run_dir=str(tmp_path))
  recs = records(tmp_path)
  assert gate.peak == 2 and all(r["status"] != "crash" for r in recs)
  assert [r["status"] for r in recs[:2]] == ["baseline", "baseline"]   # both ran at once (the gate)
  assert sum(not r["cached"] for r in recs) == 12 and res.stop_reason == "max-experiments"
  assert sorted(r["trial_id"] for r in recs) == [f"{i:06d}" for i in range(len(recs))]
  state = json.load(open(tmp_path / "state.json"))
  assert state["in_flight"] == [] and state["executed"] == 12


def test_a_free_worker_gets_the_next_proposal_without_waiting_for_the_other(tmp_path):
  """No batch barrier: while one slow trial runs, the other worker completes several trials."""
  slow_started, release, fast_calls = threading.Event(), threading.Event(), []

  def obj(p: dict) -> float:
    if not any(p.values()):   # the default program: the baseline
      return objective(p)
    if not slow_started.is_set():
      slow_started.set()
      assert release.wait(30)
      return 50.0
    fast_calls.append(p)
    if len(fast_calls) == 5:   # the 4 before have been recorded: the other worker moves on alone
      release.set()
    return objective(p)

  arrl.search.search(SPACE, obj, agent="random", max_trials=10, seed=0, workers=2, noise_repeats=1,
                     run_dir=str(tmp_path))
  recs = [r for r in records(tmp_path) if not r["cached"]]
  assert recs[0]["status"] == "baseline" and recs[1]["val_bpb"] != 50.0
  assert [r["val_bpb"] for r in recs].index(50.0) >= 5   # proposed second, recorded after 4 later trials


def drive(run_dir, agent, n, workers):
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, HERE])}
  return subprocess.Popen([sys.executable, os.path.join(HERE, "loop_driver.py"), run_dir, agent, str(n),
                           str(workers)], env=env)


def test_kill_9_with_two_trials_in_flight_then_resume_duplicates_nothing(tmp_path):
  n, run = 24, tmp_path / "run"
  rng = random.Random(1)
  in_flight_at_kill = []
  for _ in range(4):
    proc = drive(str(run), "evolution", n, 2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:   # wait until both workers are busy, then a little more
      try:
        state = json.load(open(run / "state.json"))
      except (OSError, ValueError):
        state = {}
      if len(state.get("in_flight", [])) == 2 and (run / "trials.jsonl").exists():
        break
      time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    in_flight_at_kill.append(json.load(open(run / "state.json"))["in_flight"])
  assert drive(str(run), "evolution", n, 2).wait(timeout=120) == 0
  recs = records(run)
  all_ids = [r["trial_id"] for r in recs]
  ids = [r["trial_id"] for r in recs if not r.get("confirms")]   # the driver confirms every passing candidate
  assert any(len(f) == 2 for f in in_flight_at_kill), in_flight_at_kill
  by_id = {r["trial_id"]: r["program"] for r in recs}
  for lost in (p for f in in_flight_at_kill for p in f):   # each trial in flight ran (again) under its own id
    assert by_id[lost["trial_id"]] == lost["program"]
  assert len(set(all_ids)) == len(all_ids) and sorted(ids) == [f"{i:06d}" for i in range(len(ids))]
  confirmations = [r for r in recs if r.get("confirms")]
  assert confirmations and all(r["trial_id"] == f"{r['confirms']}-c1" and r["confirms"] in ids for r in confirmations)
  state = json.load(open(run / "state.json"))
  executed = sum(not r["cached"] for r in recs)   # every lost trial was rerun, none counted twice
  assert state["executed"] == executed and n <= executed <= n + 2   # a confirmation may overshoot by 1 per worker
  with open(run / "results.tsv") as f:
    assert [line.split("\t")[0] for line in f.read().splitlines()[1:]] == all_ids
  assert state["in_flight"] == [] and state["pending"] is None


def test_one_worker_run_resumes_with_two_workers(tmp_path):
  space_run = str(tmp_path)
  arrl.search.search(SPACE, objective, agent="greedy", max_trials=5, seed=0, run_dir=space_run)
  res = arrl.search.search(SPACE, objective, agent="greedy", max_trials=10, seed=0, run_dir=space_run, workers=2)
  ids = [t.trial_id for t in res.trials]
  assert len(set(ids)) == len(ids) and sum(not t.cached for t in res.trials) == 10


def test_workers_with_a_trial_timeout_run_each_call_in_its_own_process(tmp_path):
  gate_dir = tmp_path / "gate"
  gate_dir.mkdir()

  def obj(p: dict) -> float:   # runs in a forked child: only another child can open the gate
    open(gate_dir / str(os.getpid()), "w").close()
    end = time.monotonic() + 30
    while len(os.listdir(gate_dir)) < 2:
      if time.monotonic() > end:
        raise TimeoutError("no other call ran at the same time")
      time.sleep(0.01)
    return objective(p)

  res = arrl.search.search(SPACE, obj, agent="random", max_trials=4, seed=0, workers=2, noise_repeats=2,
                           trial_timeout_s=60)
  assert [t.status for t in res.trials[:2]] == ["baseline", "baseline"] and os.getpid() not in {
      int(n) for n in os.listdir(gate_dir)}
