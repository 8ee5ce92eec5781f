import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import arrl.search
from arrl.agents import make_agent
from arrl.loop import LoopConfig, SearchLoop
from arrl.oracle import Oracle
from arrl.search import CallableEvaluator
from arrl.space import Space
from loop_driver import SPACE, objective

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)


def ledger(run_dir):
  with open(os.path.join(run_dir, "trials.jsonl")) as f:
    recs = [json.loads(line) for line in f]
  return [(r["trial_id"], r["digest"], r["val_bpb"], r["status"], r["cached"]) for r in recs]


def drive(run_dir, agent, n, **kw):
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, HERE])}
  return subprocess.Popen([sys.executable, os.path.join(HERE, "loop_driver.py"), run_dir, agent, str(n)], env=env,
                          **kw)


@pytest.mark.parametrize("agent", ["evolution", "greedy"])
def test_kill_9_then_resume_loses_nothing_and_duplicates_nothing(tmp_path, agent):
  n = 60
  ref = tmp_path / "ref"
  assert drive(str(ref), agent, n).wait(timeout=120) == 0
  run = tmp_path / "killed"
  rng = random.Random(0)
  sizes = []
  for _ in range(4):  # kill -9 at random moments, then resume
    proc = drive(str(run), agent, n)
    time.sleep(rng.uniform(0.8, 2.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sizes.append(len(ledger(run)) if (run / "trials.jsonl").exists() else 0)
  assert drive(str(run), agent, n).wait(timeout=120) == 0
  got, want = ledger(run), ledger(ref)
  assert any(0 < s < len(want) for s in sizes), sizes  # some kills landed mid-run
  assert len({r[0] for r in got}) == len(got)          # no duplicated trial
  assert got == want                                   # resumed exactly: same trials, same order, same results


def test_resume_continues_exactly_in_process(tmp_path):
  first = arrl.search.search(SPACE, objective, agent="evolution", max_trials=8, seed=4, run_dir=str(tmp_path / "a"))
  resumed = arrl.search.search(SPACE, objective, agent="evolution", max_trials=16, seed=4,
                               run_dir=str(tmp_path / "a"))
  straight = arrl.search.search(SPACE, objective, agent="evolution", max_trials=16, seed=4,
                                run_dir=str(tmp_path / "b"))
  assert [t.params for t in resumed.trials] == [t.params for t in straight.trials]
  assert [t.params for t in first.trials] == [t.params for t in straight.trials[:len(first.trials)]]


def _loop(run_dir, digest="env-a", force=False, oracle=None, durable=True):
  space = Space.from_dict(SPACE)
  return SearchLoop(space, CallableEvaluator(space, objective, digest), make_agent("random", seed=0), str(run_dir),
                    oracle or Oracle(max_experiments=3, patience=None), LoopConfig(noise_repeats=1, durable=durable),
                    force=force)


def test_throw_away_loops_keep_a_ledger_but_write_no_state(tmp_path):
  _loop(tmp_path, durable=False).run()
  assert (tmp_path / "trials.jsonl").exists() and not (tmp_path / "state.json").exists()


def test_environment_mismatch_refuses_to_resume_unless_forced(tmp_path):
  _loop(tmp_path).run()
  before = open(tmp_path / "state.json").read()
  with pytest.raises(ValueError, match="frozen-environment digest changed"):
    _loop(tmp_path, digest="env-b")
  assert open(tmp_path / "state.json").read() == before  # nothing overwritten
  assert _loop(tmp_path, digest="env-b", force=True).executed == 3


def test_stop_file_and_results_tsv(tmp_path):
  loop = _loop(tmp_path, oracle=Oracle(max_experiments=100, patience=None, run_dir=str(tmp_path)))
  loop.step()
  loop.step()
  (tmp_path / "STOP").touch()
  assert loop.run() == "stop-file"
  lines = open(tmp_path / "results.tsv").read().splitlines()
  assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
  rows = [line.split("\t") for line in lines[1:]]
  assert len(rows) == 2 and rows[0][0] == "000000" and rows[0][3] == "keep" and rows[0][4] == "baseline"
  assert float(rows[1][1]) == pytest.approx(loop.ledger.records()[1]["val_bpb"])
  assert rows[1][3] in ("keep", "discard") and ": 0 -> " in rows[1][4]


def test_corrupt_state_is_a_clear_error_and_not_overwritten(tmp_path):
  _loop(tmp_path).run()
  (tmp_path / "state.json").write_text("{not json")
  with pytest.raises(ValueError, match="cannot read"):
    _loop(tmp_path)
  assert (tmp_path / "state.json").read_text() == "{not json"
