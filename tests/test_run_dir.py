"""Run directories: one process at a time, nothing read back trusted, nothing lost, every bad file one clear line.

Fast: toy objectives (tests/loop_driver.py) and, for arrl.main, a fake data loader and evaluator (no training).
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

import arrl.search
from arrl import main as arrl_main
from arrl.agents import make_agent
from arrl.grammar import Choice, Grammar
from arrl.ledger import Ledger, LedgerError
from arrl.lock import RunDirBusy, RunDirLock
from arrl.loop import EvalResult, LoopConfig, LoopError, SearchLoop
from arrl.nanochat_space import export_script, nanochat_space, register_mlp_variant
from arrl.oracle import Oracle
from arrl.search import CallableEvaluator
from arrl.space import Space
from arrl.tree import digest, from_json, to_data, to_json
from loop_driver import SPACE, objective

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toy_loop(run_dir, n=6, agent="random", evaluator=None):
  space = Space.from_dict(SPACE)
  return SearchLoop(space, evaluator or CallableEvaluator(space, objective, "env-a"), make_agent(agent, seed=0),
                    str(run_dir), Oracle(max_experiments=n, patience=None), LoopConfig(noise_repeats=1))


def ids(run_dir):
  return [json.loads(line)["trial_id"] for line in open(os.path.join(run_dir, "trials.jsonl"))]


def one_line(message):
  assert "\n" not in message and message.strip(), message
  return message


# ---- 1. one process per run dir ------------------------------------------------------------------------

def test_a_second_arrl_main_on_a_held_run_dir_exits_with_one_line_naming_the_holder(tmp_path):
  with RunDirLock(str(tmp_path / "run")):
    proc = subprocess.run([sys.executable, "-m", "arrl.main", "--preset", "tiny", "--run-dir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  last = one_line(proc.stderr.strip().splitlines()[-1])
  assert f"in use by pid {os.getpid()} on host {socket.gethostname()} since " in last
  assert not (tmp_path / "run" / "trials.jsonl").exists()


def test_arrl_search_refuses_a_held_run_dir(tmp_path):
  with RunDirLock(str(tmp_path)):
    with pytest.raises(RunDirBusy, match=f"in use by pid {os.getpid()}"):
      arrl.search.search(SPACE, objective, max_trials=2, run_dir=str(tmp_path))
  assert arrl.search.search(SPACE, objective, max_trials=2, run_dir=str(tmp_path)).stop_reason == "max-experiments"


def _dead_pid():
  proc = subprocess.Popen(["true"])
  proc.wait()
  return proc.pid


@pytest.mark.parametrize("host, taken", [(socket.gethostname(), True), ("some-other-host", False)])
def test_a_stale_lock_is_taken_over_on_this_host_with_a_message_and_refused_from_another(tmp_path, capsys, host, taken):
  (tmp_path / "lock").write_text(json.dumps({"pid": _dead_pid(), "host": host, "since": 0}))
  lock = RunDirLock(str(tmp_path))
  if taken:
    lock.acquire()
    assert "taking over the stale lock" in capsys.readouterr().err
    assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()
    lock.release()
  else:
    with pytest.raises(RunDirBusy, match="some-other-host"):
      lock.acquire()


@pytest.mark.parametrize("name", ["results.tsv", "state.json"])
def test_temp_files_are_per_process(tmp_path, name):
  (tmp_path / f"{name}.tmp").write_text("another process's half-written file")
  toy_loop(tmp_path, n=2).run()
  assert (tmp_path / f"{name}.tmp").read_text() == "another process's half-written file"


# ---- 2. names and trees are checked before they reach a script -------------------------------------------

def _evil_tree():
  data = to_data(nanochat_space("tiny").default())
  data["fields"]["model"]["fields"]["mlp"]["variant"] = 'x"""\nimport os; os.system("touch pwned")\n"""'
  return from_json(json.dumps(data))


@pytest.mark.parametrize("make, message", [
    (lambda: export_script(_evil_tree(), "tiny"), "export_script: not a valid tiny program tree"),
    (lambda: register_mlp_variant('x"""', lambda *a: None), "must be an identifier"),
    (lambda: Grammar().add_variant("mlp", "has space"), "must be an identifier"),
    (lambda: Grammar().add_variant("a-b", "x"), "must be an identifier"),
])
def test_unsafe_names_and_off_space_trees_are_refused(make, message):
  with pytest.raises(ValueError, match=message) as e:
    make()
  one_line(str(e.value))


# ---- 3, 11. state.json and ledger read back: validated, one line naming the file ----------------------------

def _off_grid(program):
  data = json.loads(program)
  data["fields"]["x0"] = 123
  return json.dumps(data)


@pytest.mark.parametrize("edit, message", [
    (lambda st: {}, "field 'env_digest' is missing"),
    (lambda st: [], "expected a JSON object"),
    (lambda st: {**st, "executed": "3"}, "field 'executed' must be int"),
    (lambda st: {**st, "sigma": True}, "field 'sigma' must be"),
    (lambda st: {**st, "next_id": "7"}, "field 'next_id' must be int"),
    (lambda st: {**st, "current": _off_grid(st["current"])}, "current: x0=123 is not legal"),
    (lambda st: {**st, "agent": {}}, "agent's state is not usable"),
    (lambda st: {**st, "pending": {**st["pending"], "trial_id": "../../x"}}, "'../../x' is not a trial id"),
    (lambda st: {**st, "pending": {**st["pending"], "trial_id": "/tmp/x"}}, "is not a trial id"),
    (lambda st: {**st, "pending": {**st["pending"], "program": _off_grid(st["pending"]["program"])}},
     "pending program: x0=123 is not legal"),
    (lambda st: {**st, "pending": {k: v for k, v in st["pending"].items() if k != "program"}},
     "field 'program' is missing"),
])
def test_bad_state_files_are_one_line_naming_the_file_and_never_run(tmp_path, edit, message):
  loop = toy_loop(tmp_path, agent="evolution")
  loop.run()
  loop.pending = loop._propose()
  loop._save()
  state = json.loads((tmp_path / "state.json").read_text())
  (tmp_path / "state.json").write_text(json.dumps(edit(state)))
  with pytest.raises(ValueError, match=message) as e:
    toy_loop(tmp_path, n=8, agent="evolution")
  assert str(e.value).startswith(str(tmp_path / "state.json")) and one_line(str(e.value))
  assert not os.path.exists(tmp_path / "x") and not os.path.exists("/tmp/x.log")


def test_an_agent_state_holding_programs_off_the_space_stops_at_the_proposal(tmp_path):
  toy_loop(tmp_path, n=4, agent="evolution").run()
  state = json.loads((tmp_path / "state.json").read_text())
  population = state["agent"]["population"]
  state["agent"]["population"] = [[_off_grid(t), 0.0] for t, _ in population]
  state["agent"]["proposed"] = 100   # past the initial samples: the next proposal mutates the population
  (tmp_path / "state.json").write_text(json.dumps(state))
  loop = toy_loop(tmp_path, n=8, agent="evolution")
  with pytest.raises(LoopError, match="agent evolution cannot propose a program on the space") as e:
    loop.step()
  trials = [r for r in loop.ledger.records() if not r.confirms]   # confirmation rows left out
  assert "state.json" in one_line(str(e.value)) and len(trials) == len(population) + 1


@pytest.mark.parametrize("drop", ["program", "run_status"])
def test_a_ledger_record_without_a_loop_field_is_one_line_naming_the_ledger(tmp_path, drop):
  toy_loop(tmp_path).run()
  lines = (tmp_path / "trials.jsonl").read_text().splitlines()
  rec = json.loads(lines[-1])
  del rec[drop]
  (tmp_path / "trials.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(rec)]) + "\n")
  with pytest.raises(LedgerError, match=f"trials.jsonl: trial {rec['trial_id']}: field '{drop}' is missing") as e:
    toy_loop(tmp_path, n=8)
  one_line(str(e.value))


# ---- 6. a torn last line: repaired, said, its id never reused -------------------------------------------------

def test_a_torn_last_record_is_moved_aside_its_id_never_reused_and_counts_stay_consistent(tmp_path, capsys):
  toy_loop(tmp_path, n=5, agent="evolution").run()
  path = tmp_path / "trials.jsonl"
  data = path.read_bytes()
  cut = data.rstrip(b"\n").rfind(b"\n") + 1
  torn_id = json.loads(data[cut:])["trial_id"]
  path.write_bytes(data[:cut + 40])   # the last record, which the state had already counted, is torn
  loop = toy_loop(tmp_path, n=8, agent="evolution")
  err = capsys.readouterr().err
  assert f"moved it to {path}.torn-" in err and f"trial {torn_id} is lost and its id is not reused" in err
  assert "rebuilding the search state" in err
  recs = loop.ledger.records()
  assert loop.executed == sum(not r.cached for r in recs)
  assert loop.best is None or loop.best in recs
  loop.run()
  assert torn_id not in ids(tmp_path) and len(set(ids(tmp_path))) == len(ids(tmp_path))
  assert loop.executed == sum(not r.cached for r in loop.ledger.records()) == 8


def test_a_torn_pending_record_reruns_under_a_fresh_id(tmp_path, capsys):
  loop = toy_loop(tmp_path, n=3)
  loop.run()
  loop.pending = loop._propose()
  loop._save()
  torn_id = loop.pending.trial_id
  with open(tmp_path / "trials.jsonl", "a") as f:
    f.write(f'{{"trial_id":"{torn_id}","status":"disc')   # killed mid-append
  loop = toy_loop(tmp_path, n=4)
  assert "is lost and its id is not reused" in capsys.readouterr().err
  fresh = loop.pending.trial_id
  assert fresh > torn_id and loop.step().trial_id == fresh
  assert torn_id not in ids(tmp_path)


# ---- 7. state.json deleted: rebuilt from the ledger, with a note -------------------------------------------

@pytest.mark.parametrize("agent", ["evolution", "greedy"])
def test_a_deleted_state_is_rebuilt_from_the_ledger(tmp_path, capsys, agent):
  before = toy_loop(tmp_path, n=12, agent=agent)
  before.run()
  want = (before.best_score, before.best.trial_id, to_json(before.current), before.executed, before.sigma,
          before.baseline_scores, [o.trial_id for o in before.history], before.elapsed_s)
  os.remove(tmp_path / "state.json")
  after = toy_loop(tmp_path, n=16, agent=agent)
  assert "state.json is missing; rebuilding the search state from" in capsys.readouterr().err
  got = (after.best_score, after.best.trial_id, to_json(after.current), after.executed, after.sigma,
         after.baseline_scores, [o.trial_id for o in after.history], after.elapsed_s)
  assert got[:7] == want[:7] and got[7] == pytest.approx(want[7])
  assert after.run() == "max-experiments" and len(ids(tmp_path)) == len(set(ids(tmp_path))) >= 16


def test_a_deleted_state_beside_a_ledger_of_another_environment_is_refused(tmp_path):
  toy_loop(tmp_path, n=2).run()
  os.remove(tmp_path / "state.json")
  space = Space.from_dict(SPACE)
  with pytest.raises(ValueError, match="state.json is missing and .*trials.jsonl was run in frozen environment env-a"):
    toy_loop(tmp_path, evaluator=CallableEvaluator(space, objective, "env-b"))


# A run dir written by arrl before the typed trial record (6b983d8: tests/loop_driver.py, evolution, 5 trials).
OLD_RUN = os.path.join(ROOT, "tests", "data", "pre_trial_run")


@pytest.mark.parametrize("with_state", [True, False])
def test_a_run_dir_written_before_the_typed_trial_record_resumes(tmp_path, capsys, with_state):
  old = open(os.path.join(OLD_RUN, "trials.jsonl"), "rb").read()
  (tmp_path / "trials.jsonl").write_bytes(old)
  if with_state:
    shutil.copy(os.path.join(OLD_RUN, "state.json"), tmp_path / "state.json")
  space = Space.from_dict(SPACE)
  loop = SearchLoop(space, CallableEvaluator(space, objective, "4e1fc5b19294159b"), make_agent("evolution", seed=3),
                    str(tmp_path), Oracle(max_experiments=8, patience=None), LoopConfig(noise_repeats=2, confirm=1))
  assert ("rebuilding the search state from" in capsys.readouterr().err) != with_state
  assert (loop.best.trial_id, loop.best_score, loop.baseline_scores, loop.executed) == ("000003", 3.0, [14.0] * 2, 5)
  assert [(o.trial_id, o.status, o.score) for o in loop.history] == [("000002", "discard", 23.0), ("000003", "keep", 3.0)]
  assert [r.status for r in loop.ledger.records()] == ["baseline", "baseline", "discard", "confirm", "keep"]
  assert loop.run() == "max-experiments" and loop.executed >= 8
  assert (tmp_path / "trials.jsonl").read_bytes().startswith(old)   # the old records are never rewritten
  assert len(ids(tmp_path)) == len(set(ids(tmp_path))) and min(ids(tmp_path)[5:]) >= "000004"
  assert loop.best_score <= 3.0


# ---- 8. a baseline that keeps failing stops the run, its error on the console ---------------------------------

class Crashing:
  env_digest = "env-a"

  def evaluate(self, tree, trial_id, context, replicate=0):
    return EvalResult(status="crash", score=None, metrics={
        "error": "worker exited", "log_tail": "compiling\nRuntimeError: Unknown flag in XLA_FLAGS: --xla_bogus"})


def test_a_baseline_that_keeps_crashing_stops_the_loop_with_its_error_line(tmp_path):
  loop = toy_loop(tmp_path, n=20, evaluator=Crashing())
  reason = loop.run()
  assert reason.startswith("baseline-failed") and "3 times in a row" in reason and "worker exited" in reason
  assert len(loop.ledger) == 3


# ---- arrl.main, with a fake data loader and evaluator: no training ----------------------------------------------

class FakeEvaluator:
  """Stands in for NanochatEvaluator: scores a program by its digest, or crashes like a broken worker."""
  made: list = []
  crash = False

  def __init__(self, **kw):
    self.kw, self.env_digest = kw, kw["env_digest"]
    FakeEvaluator.made.append(kw)

  def evaluate(self, tree, trial_id, context, replicate=0):
    if FakeEvaluator.crash:
      return EvalResult(status="crash", score=None, metrics={"log_tail": "RuntimeError: Unknown flag in XLA_FLAGS"})
    return EvalResult(status="ok", score=1.0 + int(digest(tree)[:6], 16) / 2**26)


class FakeData:
  def env_digest(self, preset, budget_s):
    return f"fake-{preset.name}-{budget_s}"


@pytest.fixture
def fake_nanochat(monkeypatch):
  monkeypatch.setattr("nanochat_jax.data.load_run_data", lambda *a, **kw: FakeData())
  monkeypatch.setattr(arrl_main, "NanochatEvaluator", FakeEvaluator)
  monkeypatch.setattr(FakeEvaluator, "made", [])
  monkeypatch.setattr(FakeEvaluator, "crash", False)
  return FakeEvaluator


def test_a_bare_run_dir_resumes_with_the_stored_flags(tmp_path, fake_nanochat, capsys):
  run = str(tmp_path / "run")
  data = tmp_path / "corpus.txt"
  data.write_text("hello")
  assert arrl_main.main(["--preset", "tiny", "--budget-s", "7", "--agent", "random", "--seed", "3", "--data",
                         str(data), "--noise-repeats", "1", "--max-experiments", "2", "--run-dir", run]) == 0
  stored = json.loads(open(os.path.join(run, "run.json")).read())
  assert (stored["preset"], stored["budget_s"], stored["agent"], stored["seed"], stored["data"]) == (
      "tiny", 7.0, "random", 3, str(data))
  assert arrl_main.main(["--run-dir", run, "--max-experiments", "4"]) == 0
  kw = fake_nanochat.made[-1]
  assert (kw["preset"], kw["budget_s"], kw["seed"], kw["data"]) == ("tiny", 7.0, 3, str(data))
  assert len(ids(run)) == 4 and "stop_reason: max-experiments" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--preset", "cpu", "--force"], "--preset cpu differs from this run's tiny"),
    (["--agent", "greedy"], "--agent greedy differs from this run's random"),
    (["--budget-s", "9"], "--budget-s 9.0 differs from this run's 7.0"),
    (["--seed", "1"], "--seed 1 differs from this run's 3"),
])
def test_a_flag_that_contradicts_the_stored_run_is_one_line(tmp_path, fake_nanochat, capsys, flags, message):
  run = str(tmp_path / "run")
  assert arrl_main.main(["--preset", "tiny", "--budget-s", "7", "--agent", "random", "--seed", "3",
                         "--noise-repeats", "1", "--max-experiments", "1", "--run-dir", run]) == 0
  capsys.readouterr()
  before = open(os.path.join(run, "trials.jsonl")).read()
  assert arrl_main.main(["--run-dir", run, *flags]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and message in err[0] and "run.json" in err[0]
  assert open(os.path.join(run, "trials.jsonl")).read() == before


@pytest.mark.parametrize("field, value, message", [
    ("budget_s", 1e9, "budget must be a number of seconds in (0, 86400]"),
    ("seed", -1, "seed must be an integer in [0, 2**32)"),
])
def test_an_out_of_range_value_in_run_json_is_one_line(tmp_path, fake_nanochat, capsys, field, value, message):
  run = tmp_path / "run"
  assert arrl_main.main(["--preset", "tiny", "--agent", "random", "--noise-repeats", "1", "--max-experiments", "1",
                         "--run-dir", str(run)]) == 0
  stored = json.loads((run / "run.json").read_text())
  (run / "run.json").write_text(json.dumps({**stored, field: value}))
  capsys.readouterr()
  assert arrl_main.main(["--run-dir", str(run)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f"error: {run / 'run.json'}: ") and message in err[0]


def test_initial_on_an_existing_run_is_one_line_not_silently_ignored(tmp_path, fake_nanochat, capsys):
  run = tmp_path / "run"
  assert arrl_main.main(["--preset", "tiny", "--agent", "random", "--noise-repeats", "1", "--max-experiments", "1",
                         "--run-dir", str(run)]) == 0
  initial = tmp_path / "initial.json"
  initial.write_text('{"model": {"depth": 3}}')
  capsys.readouterr()
  before = (run / "trials.jsonl").read_text()
  assert arrl_main.main(["--run-dir", str(run), "--initial", str(initial), "--max-experiments", "2"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0] == (f"error: --initial only starts a new run, and {run} has one: resume it "
                                      "without --initial, or start a new --run-dir")
  assert (run / "trials.jsonl").read_text() == before


def test_a_forced_resume_on_another_preset_without_run_json_is_one_line(tmp_path, fake_nanochat, capsys):
  run = tmp_path / "run"
  assert arrl_main.main(["--preset", "tiny", "--agent", "random", "--noise-repeats", "1", "--max-experiments", "1",
                         "--run-dir", str(run)]) == 0
  os.remove(run / "run.json")   # a run directory made before run.json existed
  capsys.readouterr()
  assert arrl_main.main(["--preset", "cpu", "--agent", "random", "--force", "--run-dir", str(run)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith(f"error: {run / 'trials.jsonl'}: trial 000000 program: ") and "is not legal" in err[-1]


def test_a_crashing_baseline_ends_arrl_main_with_its_error_line(tmp_path, fake_nanochat, capsys):
  fake_nanochat.crash = True
  rc = arrl_main.main(["--preset", "tiny", "--agent", "random", "--max-experiments", "50",
                       "--run-dir", str(tmp_path / "run")])
  err = capsys.readouterr().err
  assert rc == 1 and len(ids(tmp_path / "run")) == 3
  assert err.count("error: RuntimeError: Unknown flag in XLA_FLAGS") == 3   # on each trial line
  assert err.strip().splitlines()[-1].startswith("error: baseline-failed") and "XLA_FLAGS" in err.splitlines()[-1]


def test_bad_start_flags_are_one_line_and_create_nothing(tmp_path, fake_nanochat, capsys, monkeypatch):
  run = tmp_path / "run"
  cases = [
      (["--agent-init", str(tmp_path / "missing")], "--agent-init", "no such directory"),
      (["--agent", "random", "--agent-init", str(tmp_path)], "--agent-init", "only applies to --agent ppo"),
  ]
  monkeypatch.setitem(sys.modules, "optuna", None)   # import optuna -> ImportError
  cases.append((["--agent", "tpe"], "agent 'tpe' needs optuna", "pip install optuna"))
  for flags, *messages in cases:
    assert arrl_main.main(["--preset", "tiny", "--run-dir", str(run), *flags]) == 2, flags
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and all(m in err[-1] for m in messages), err
    assert not run.exists() and not (tmp_path / "missing").exists()


def test_a_stale_stop_file_is_refused_with_a_hint(tmp_path, fake_nanochat, capsys):
  run = tmp_path / "run"
  run.mkdir()
  (run / "STOP").touch()
  assert arrl_main.main(["--preset", "tiny", "--run-dir", str(run)]) == 2
  assert capsys.readouterr().err.strip().splitlines()[-1] == (
      f"error: {run / 'STOP'} exists from an earlier stop; remove it to continue")


def test_a_bad_state_file_is_one_line_from_arrl_main(tmp_path, fake_nanochat, capsys):
  run = tmp_path / "run"
  assert arrl_main.main(["--preset", "tiny", "--agent", "random", "--noise-repeats", "1", "--max-experiments", "1",
                         "--run-dir", str(run)]) == 0
  (run / "state.json").write_text("{}")
  capsys.readouterr()
  assert arrl_main.main(["--run-dir", str(run)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1] == f"error: {run / 'state.json'}: field 'env_digest' is missing"


# ---- 13. arrl.search: timeouts, objective identity, Python-speaking errors --------------------------------------

def _hangs_on_x0_1(p):
  if p["x0"] == 1:
    import time
    time.sleep(3600)
  return objective(p)


def test_an_objective_that_never_returns_is_recorded_as_a_timeout():
  # 4 s, not 1: a forked child that returns at once took over 1 s at load ~10 (a false timeout); 12 trials of
  # seed 0 still hang once
  res = arrl.search.search(SPACE, _hangs_on_x0_1, agent="random", max_trials=12, seed=0, trial_timeout_s=4.0)
  by_status = {t.status for t in res.trials if t.params["x0"] == 1}
  assert by_status == {"timeout"} and res.stop_reason == "max-experiments"
  assert all(t.score == objective(t.params) for t in res.trials if t.params["x0"] != 1)


def test_two_different_objectives_or_spaces_on_one_run_dir_are_refused(tmp_path):
  run = str(tmp_path)
  arrl.search.search(SPACE, lambda p: p["x0"], max_trials=2, run_dir=run)
  with pytest.raises(ValueError, match="holds a search of objective .*<lambda>") as e:
    arrl.search.search(SPACE, lambda p: -p["x0"], max_trials=2, run_dir=run)
  assert "--" not in str(e.value)
  other = {**SPACE, "x0": {"choices": [0, 1, 2], "default": 0}}
  with pytest.raises(ValueError, match="holds a search over another space") as e:
    arrl.search.search(other, lambda p: p["x0"], max_trials=2, run_dir=run)
  assert "--" not in str(e.value)
  assert arrl.search.search(SPACE, lambda p: p["x0"], max_trials=3, run_dir=run).stop_reason == "max-experiments"
