"""LocalProcessExecutor fault injection with the toy trials in tests/toy_trials.py (no jax)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from arrl.abort import AbortPolicy, AbortReference, AbortWatcher
from arrl.runner import (LocalProcessExecutor, TrialCancelled, TrialJob, TrialResult, WorkerLimits,
                         group_rss_mb)

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


@pytest.fixture(scope="module")
def executor() -> LocalProcessExecutor:
  limits = WorkerLimits(max_rss_mb=256, stop_grace_s=1.0, exit_grace_s=0.5)
  return LocalProcessExecutor(limits, jax_cache_dir=None, pythonpath=(TESTS,))


def job(fn: str, **kw) -> TrialJob:
  defaults = dict(budget_s=1.0, compile_cap_s=3.0, eval_allowance_s=0.5)  # generous for loaded CI
  return TrialJob(trial_id=kw.pop("trial_id", fn), fn=f"toy_trials:{fn}", **{**defaults, **kw})


def alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  try:
    with open(f"/proc/{pid}/stat") as f:   # a zombie is dead for our purposes
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def wait_file(path: str, timeout: float = 10.0) -> str:
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    if os.path.exists(path) and open(path).read():
      return open(path).read()
    time.sleep(0.02)
  raise AssertionError(f"{path} never appeared")


def test_ok_result_fields(executor, tmp_path):
  log = tmp_path / "t.log"
  r = executor.run(job("ok", payload={"steps": 10, "val_bpb": 0.987}, log_path=str(log)))
  assert r.status == "ok" and r.error is None and r.exit_code == 0
  assert r.val_bpb == 0.987 and r.num_steps == 10 and r.peak_memory_mb == 512.0 and r.total_tokens_M == 1.5
  assert len(r.loss_curve) == 10 and r.loss_curve[-1] == [1.0, 5.0]
  assert 0 < r.startup_seconds < r.total_seconds < 10
  assert r.started_at <= r.finished_at
  assert "hello from the toy trial" in r.log_tail and "hello from the toy trial" in log.read_text()
  fields = r.ledger_fields()
  assert fields["val_bpb"] == 0.987 and "status" not in fields and "trial_id" not in fields


FAULTS = [
    ("crash", {}, "crash", "RuntimeError: toy failure: boom"),
    ("segfault", {}, "crash", "SIGSEGV"),
    ("hang_after_progress", {"budget_s": 0.5, "compile_cap_s": 2.0}, "timeout", "timeout"),
    ("hang_before_progress", {"compile_cap_s": 1.0}, "compile-timeout", "compile-timeout"),
    ("diverged", {}, "diverged", None),
    ("nan_score", {}, "diverged", "nan"),
    ("compile_timeout", {}, "compile-timeout", None),
    ("bad_return", {}, "crash", "must return a dict"),
    ("alloc", {"payload": {"mb": 1024, "dt": 0.01}, "budget_s": 30.0}, "crash", "OOM"),
]


@pytest.mark.parametrize("fn,kw,status,error", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_gives_status_and_next_job_runs(executor, fn, kw, status, error):
  t0 = time.monotonic()
  r = executor.run(job(fn, **kw))
  assert r.status == status, (r.status, r.error, r.log_tail)
  if error is None:
    assert r.error is None
  else:
    assert error in r.error
  assert r.val_bpb is None
  assert time.monotonic() - t0 < 8
  assert executor.run(job("ok", trial_id="next")).status == "ok"


def test_hang_is_killed_at_the_deadline(executor):
  t0 = time.monotonic()
  r = executor.run(job("hang_after_progress", budget_s=0.5, compile_cap_s=1.5, eval_allowance_s=0.5))
  wall = time.monotonic() - t0
  assert r.status == "timeout" and 2.5 <= wall < 5.0 and r.exit_code == -signal.SIGKILL
  assert len(r.loss_curve) == 2   # progress before the hang was kept


def test_segfault_leaves_a_python_traceback(executor):
  r = executor.run(job("segfault"))
  assert r.exit_code == -signal.SIGSEGV and "Fatal Python error" in r.log_tail


def test_rlimit_as_turns_overallocation_into_memory_error(tmp_path):
  ex = LocalProcessExecutor(WorkerLimits(max_rss_mb=None, rlimit_as_mb=512), jax_cache_dir=None,
                            pythonpath=(TESTS,))
  r = ex.run(job("alloc", payload={"mb": 1024}, budget_s=30.0))
  assert r.status == "crash" and "MemoryError" in r.error and "OOM" in r.error


def test_stdout_cannot_forge_events(executor):
  r = executor.run(job("noisy_stdout", payload={"lines": 2000}))
  assert r.status == "ok" and r.val_bpb == 0.9
  assert len(r.log_tail.splitlines()) == executor.limits.log_tail_lines


def _reference() -> AbortReference:
  p = np.linspace(0.005, 1.0, 200)
  return AbortReference(curve=np.stack([p, 2.0 * p ** -0.5 + 3.0], axis=1), val_bpb=1.0, sigma_bpb=0.001)


def test_early_abort_stops_a_clearly_worse_run(executor):
  watcher = AbortWatcher(AbortPolicy(), _reference())
  r = executor.run(job("abortable", payload={"steps": 150, "dt": 0.008}, budget_s=30.0), monitor=watcher)
  assert r.status == "aborted", (r.status, r.error, r.log_tail)
  assert r.num_steps < 150 and r.val_bpb is None
  assert r.abort is watcher.record and r.abort["stop"] and r.abort["fraction"] == pytest.approx(0.3, abs=0.02)
  assert r.abort["predicted_loss"] - r.abort["best_predicted_loss"] == pytest.approx(0.5, abs=0.05)
  assert "early abort requested" in r.log_tail


def test_close_run_is_not_aborted_and_keeps_its_prediction(executor):
  watcher = AbortWatcher(AbortPolicy(), _reference())
  r = executor.run(job("ok", payload={"steps": 200}), monitor=watcher)
  assert r.status == "ok" and r.abort is not None and not r.abort["stop"]
  assert r.abort["fraction"] == pytest.approx(0.7, abs=0.01)


class AlwaysStop:
  record = {"stop": True}

  def observe(self, event: dict) -> bool:
    return True


def test_trial_ignoring_stop_is_killed_after_grace(executor):
  t0 = time.monotonic()
  r = executor.run(job("ignores_stop", budget_s=30.0), monitor=AlwaysStop())
  assert r.status == "aborted" and "grace" in r.error and r.abort == {"stop": True}
  assert time.monotonic() - t0 < executor.limits.stop_grace_s + 3


class Broken:
  record = None

  def observe(self, event: dict) -> bool:
    raise ZeroDivisionError("bug in the monitor")


def test_monitor_bug_does_not_cost_the_trial(executor):
  r = executor.run(job("ok"), monitor=Broken())
  assert r.status == "ok" and "monitor failed" in r.log_tail


def test_grandchildren_are_killed(executor, tmp_path):
  pid_file = tmp_path / "child.pid"
  r = executor.run(job("child_then_exit", payload={"pid_file": str(pid_file)}))
  assert r.status == "ok" and r.val_bpb == 1.1
  child = int(pid_file.read_text())
  time.sleep(0.1)
  assert not alive(child)


def test_cancel_kills_the_worker_and_raises(executor, tmp_path):
  pid_file = tmp_path / "w.pid"
  t0 = time.monotonic()
  with pytest.raises(TrialCancelled):
    executor.run(job("hang_after_progress", payload={"pid_file": str(pid_file)}, budget_s=60.0),
                 cancel=lambda: pid_file.exists() and time.monotonic() - t0 > 0.3)
  assert time.monotonic() - t0 < 3
  assert not alive(int(pid_file.read_text()))


# The parent restores Python's default SIGINT handler: a test run launched in the background (`cmd &` in a
# non-interactive shell) inherits an ignored SIGINT, which would make the parent immune to Ctrl-C.
PARENT = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from arrl.runner import LocalProcessExecutor, TrialJob, WorkerLimits
    ex = LocalProcessExecutor(WorkerLimits(max_rss_mb=None), jax_cache_dir=None, pythonpath=(sys.argv[1],))
    print("started", flush=True)
    ex.run(TrialJob("p", "toy_trials:hang_after_progress", payload={"pid_file": sys.argv[2]}, budget_s=60))
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["int", "term", "kill"])
def test_parent_death_leaves_no_orphan_worker(tmp_path, sig):
  pid_file = tmp_path / "w.pid"
  parent = subprocess.Popen([sys.executable, "-c", PARENT, TESTS, str(pid_file)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  worker = int(wait_file(str(pid_file)))
  assert alive(worker)
  parent.send_signal(sig)
  _, err = parent.communicate(timeout=10)  # drains the parent's pipes too
  assert parent.returncode != 0, err.decode(errors="replace")[-2000:]
  end = time.monotonic() + 5
  while alive(worker) and time.monotonic() < end:
    time.sleep(0.02)
  assert not alive(worker)


def test_worker_env_sets_jax_cache_and_imports(tmp_path):
  ex = LocalProcessExecutor(jax_cache_dir=str(tmp_path / "jaxcache"), pythonpath=(TESTS,))
  env = ex._worker_env()
  assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "jaxcache") and (tmp_path / "jaxcache").is_dir()
  assert env["PYTHONPATH"].split(os.pathsep)[:2] == [ROOT, TESTS]


def test_default_jax_cache_is_under_arrl_cache_and_bounded(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_MAX_SIZE"}
  worker_env = LocalProcessExecutor(env={**env, "ARRL_CACHE": str(tmp_path)})._worker_env()
  assert worker_env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "jax")
  assert int(worker_env["JAX_COMPILATION_CACHE_MAX_SIZE"]) == 2 * 2**30


class _LogWatcher:
  """A monitor that asks the trial to stop once the trial's first log line is in its log file."""
  record = None

  def __init__(self, log_path: str):
    self.log_path = log_path

  def observe(self, event: dict) -> bool:
    return "chatty line 1\n" in open(self.log_path).read()


def test_worker_log_grows_while_the_trial_runs(executor, tmp_path):
  log = str(tmp_path / "t.log")
  r = executor.run(job("chatty", budget_s=10.0, log_path=log), monitor=_LogWatcher(log))
  # A block-buffered log file shows nothing until ~4 KB (~260 of these lines) have been written.
  assert r.status == "aborted" and r.num_steps <= 50, (r.status, r.num_steps)


def test_ok_after_zero_steps_is_a_crash(executor):
  r = executor.run(job("ok", payload={"steps": 0}))
  assert r.status == "crash" and "0 training steps" in r.error


def test_group_rss_counts_this_process():
  assert group_rss_mb(os.getpgrp()) > 1.0
  assert group_rss_mb(2**22 + 12345) == 0.0


@pytest.mark.parametrize("kw,msg", [
    ({"fn": "no_colon"}, "package.module:function"),
    ({"trial_id": ""}, "trial_id"),
    ({"budget_s": 0}, "budget_s"),
    ({"payload": {"x": object()}}, "JSON"),
])
def test_bad_jobs_are_rejected(kw, msg):
  args = {"trial_id": "x", "fn": "m:f", **kw}
  with pytest.raises(ValueError, match=msg):
    TrialJob(**args)


def test_unknown_function_is_a_crash(executor):
  r = executor.run(job("does_not_exist"))
  assert r.status == "crash" and "not a callable" in r.error
  assert isinstance(r, TrialResult) and r.startup_seconds is None


def test_deadline_is_budget_plus_caps():
  assert TrialJob("x", "m:f", budget_s=300, compile_cap_s=180, eval_allowance_s=120).deadline_s == 600
