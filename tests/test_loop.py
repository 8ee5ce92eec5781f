import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import arrl.search
from arrl import tree as tree_lib
from arrl.agents import make_agent
from arrl.loop import EvalResult, LoopConfig, SearchLoop
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
  assert any(r[3] == "confirm" for r in got)           # confirmations ran (and were resumed like any trial)


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
  assert rows[0][0] == "000000" and rows[0][3] == "keep" and rows[0][4] == "baseline"
  assert [r[0] for r in rows[1:]] == [r.trial_id for r in loop.ledger.records()[1:]]
  assert float(rows[-1][1]) == pytest.approx(loop.ledger.records()[-1].score)
  assert rows[-1][0] == "000001" and rows[-1][3] in ("keep", "discard") and ": 0 -> " in rows[-1][4]
  # This improvement passed the keep test, so a confirmation run (its own row) came before the decision.
  assert rows[1:-1] == [["000001-c1", rows[-1][1], "0.0", "confirm", f"confirms 000001: {rows[-1][4]}"]]


def test_corrupt_state_is_a_clear_error_and_not_overwritten(tmp_path):
  _loop(tmp_path).run()
  (tmp_path / "state.json").write_text("{not json")
  with pytest.raises(ValueError, match="cannot read"):
    _loop(tmp_path)
  assert (tmp_path / "state.json").read_text() == "{not json"


class Killed(Exception):
  """Stands in for kill -9: raised mid-trial, nothing after it runs."""


class NoisyEvaluator:
  """The driver's objective plus noise drawn from (program, replicate): a repeated run is a new draw."""
  env_digest = "noisy"

  def __init__(self, space, kill_at=None):
    self.space, self.kill_at, self.calls = space, kill_at, []

  def evaluate(self, tree, trial_id, context, replicate=0):
    if trial_id == self.kill_at:
      raise Killed(trial_id)
    digest = tree_lib.digest(tree)
    self.calls.append((trial_id, digest, replicate, context.reference_score is not None))
    noise = random.Random(f"{digest}/{replicate}").gauss(0.0, 0.3)
    return EvalResult(status="ok", score=objective(self.space.to_params(tree)) + noise,
                      metrics={"num_steps": 10, "training_seconds": 1.0})


def _noisy_loop(run_dir, evaluator, n=30):
  space = evaluator.space
  return SearchLoop(space, evaluator, make_agent("evolution", seed=1), str(run_dir),
                    Oracle(max_experiments=n, patience=None), LoopConfig(noise_repeats=3, confirm=2))


def test_candidates_that_pass_are_confirmed_on_new_seeds_and_kept_by_their_mean(tmp_path):
  ev = NoisyEvaluator(Space.from_dict(SPACE))
  loop = _noisy_loop(tmp_path, ev)
  loop.run()
  recs = loop.ledger.records()
  by_id = {r.trial_id: r for r in recs}
  keeps = [r for r in recs if r.status == "keep"]
  assert keeps and all(r.confirmed_by == (f"{r.trial_id}-c1", f"{r.trial_id}-c2") for r in keeps)
  for r in keeps:
    runs = [r] + [by_id[c] for c in r.confirmed_by]
    assert [c.replicate for c in runs] == [r.replicate, r.replicate + 1, r.replicate + 2]
    assert all(c.status == "confirm" and c.confirms == r.trial_id for c in runs[1:])
    assert r.n_runs == 3 and r.mean_score == pytest.approx(sum(c.score for c in runs) / 3)
    assert recs.index(r) > max(recs.index(c) for c in runs[1:])   # the decision is appended last
  assert len({c[1:3] for c in ev.calls}) == len(ev.calls)          # no (program, seed) ran twice
  assert not any(best for tid, _, _, best in ev.calls if "-c" in tid)   # confirmations are not early-aborted
  assert all(r.metrics["num_steps"] == 10 and r.metrics["training_seconds"] == 1.0 for r in recs)
  # What the agent saw: one outcome per candidate, scored by the mean of its runs.
  seen = {o.trial_id: o for o in loop.history}
  assert not any("-c" in t for t in seen) and all(seen[r.trial_id].score == r.mean_score for r in keeps)
  best_runs = [r.score for r in recs if r.digest == loop.best.digest]
  assert loop.best.trial_id == keeps[-1].trial_id and loop.best_score == pytest.approx(sum(best_runs) / 3)
  # sigma pools the baselines (3 runs: 2 dof) and every confirmed candidate (1 + 2 runs: 2 dof each).
  assert loop.executed == 30 and loop.noise().dof == 2 + sum(len(r.confirmed_by or ()) for r in recs)


def _crash_after_append(loop, status):
  append = loop.ledger.append

  def append_then_die(rec):
    out = append(rec)
    if rec.status == status:
      raise Killed(rec.trial_id)
    return out
  loop.ledger.append = append_then_die


def _rows(run_dir):
  return [(r[0], r[1], r[2], r[3]) for r in ledger(run_dir)]


@pytest.mark.parametrize("when", ["confirm-in-flight", "confirm-recorded", "decision-recorded"])
def test_kill_during_confirmation_then_resume_loses_only_the_run_in_flight(tmp_path, when, capsys):
  space = Space.from_dict(SPACE)
  straight = NoisyEvaluator(space)
  _noisy_loop(tmp_path / "ref", straight).run()
  first_keep = next(r for r in ledger(tmp_path / "ref") if r[3] == "keep")[0]
  ev = NoisyEvaluator(space, kill_at=f"{first_keep}-c2" if when == "confirm-in-flight" else None)
  loop = _noisy_loop(tmp_path / "run", ev)
  if when != "confirm-in-flight":
    _crash_after_append(loop, "confirm" if when == "confirm-recorded" else "keep")
  with pytest.raises(Killed):
    loop.run()
  pending = json.load(open(tmp_path / "run" / "state.json"))["pending"]
  assert pending["trial_id"] == first_keep and pending["first_run"]["trial_id"] == first_keep
  resumed = NoisyEvaluator(space)
  _noisy_loop(tmp_path / "run", resumed).run()
  assert "rebuilding" not in capsys.readouterr().err   # resumed from state.json, not rebuilt from the ledger
  assert _rows(tmp_path / "run") == _rows(tmp_path / "ref")
  runs = [c[1:3] for c in ev.calls + resumed.calls]
  assert sorted(runs) == sorted(c[1:3] for c in straight.calls)   # nothing measured twice, nothing lost


def test_a_pending_first_run_of_another_trial_is_one_line(tmp_path):
  space = Space.from_dict(SPACE)
  straight = NoisyEvaluator(space)
  _noisy_loop(tmp_path / "ref", straight).run()
  first_keep = next(r for r in ledger(tmp_path / "ref") if r[3] == "keep")[0]
  loop = _noisy_loop(tmp_path / "run", NoisyEvaluator(space, kill_at=f"{first_keep}-c1"))
  with pytest.raises(Killed):
    loop.run()
  state = json.load(open(tmp_path / "run" / "state.json"))
  state["pending"]["first_run"]["trial_id"] = "000001"
  (tmp_path / "run" / "state.json").write_text(json.dumps(state))
  with pytest.raises(ValueError, match="first_run is not a run of trial") as e:
    _noisy_loop(tmp_path / "run", NoisyEvaluator(space))
  assert "\n" not in str(e.value) and "state.json" in str(e.value)


def test_a_run_keeps_its_trees_as_nodes(tmp_path, monkeypatch):
  # The loop passes typed records: a tree is decoded from JSON only when a run directory is read back (a
  # 20-trial run decoded 55 before, ~3 per trial), here once per ledger line and per program in state.json.
  def refuse(text):
    raise AssertionError("a tree was decoded from JSON during the run")
  monkeypatch.setattr(tree_lib, "from_json", refuse)
  loop = _noisy_loop(tmp_path, NoisyEvaluator(Space.from_dict(SPACE)), n=20)
  assert loop.run() == "max-experiments" and any(r.confirms for r in loop.ledger.records())
  monkeypatch.undo()
  decode, decoded = tree_lib.from_json, []
  monkeypatch.setattr(tree_lib, "from_json", lambda text: decoded.append(text) or decode(text))
  _noisy_loop(tmp_path, NoisyEvaluator(Space.from_dict(SPACE)), n=20)
  state = json.load(open(tmp_path / "state.json"))
  programs = [state["current"], *(p for p, _ in state["agent"]["population"])]   # evolution's own state
  lines = [json.loads(line) for line in open(tmp_path / "trials.jsonl")]
  programs += [p for r in lines for p in (r["program"], r["parent_program"]) if p is not None]
  assert sorted(decoded) == sorted(programs)
