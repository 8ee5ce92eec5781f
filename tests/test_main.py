import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from arrl import main as arrl_main
from arrl.agents import make_agent
from arrl.loop import LoopConfig, SearchLoop
from arrl.oracle import Oracle
from arrl.search import CallableEvaluator
from arrl.space import Space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--preset", "--budget-s", "--max-experiments", "--max-hours", "--run-dir", "--agent", "--seed", "--data"]


def run_main(*args, **kw):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen([sys.executable, "-m", "arrl.main", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kw)


def test_help_explains_every_flag(capsys):
  with pytest.raises(SystemExit) as e:
    arrl_main.parse_args(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  assert all(flag in out for flag in FLAGS)


@pytest.mark.parametrize("argv, message", [
    (["--max-experiments", "0"], "--max-experiments must be >= 1"),
    (["--budget-s", "-3"], "--budget-s: budget must be a number of seconds in (0, 86400]"),
    (["--agent", "nope"], "unknown --agent"),
    (["--confirm", "-1"], "--confirm must be >= 0"),
    (["--false-keep", "1"], "--false-keep must be in (0, 1)"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
])
def test_bad_flags_exit_nonzero_with_a_clear_message(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    arrl_main.parse_args(argv)
  assert e.value.code != 0 and message in capsys.readouterr().err


def test_unusable_run_dir_is_one_clear_line_and_nothing_is_overwritten(tmp_path, capsys):
  not_a_dir = tmp_path / "file"
  not_a_dir.write_text("keep me")
  assert arrl_main.main(["--preset", "tiny", "--run-dir", str(not_a_dir)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("error: ") and "not a directory" in err[-1]
  assert not_a_dir.read_text() == "keep me"
  broken = tmp_path / "run"
  broken.mkdir()
  (broken / "state.json").write_text("{garbage")
  assert arrl_main.main(["--preset", "tiny", "--run-dir", str(broken)]) == 2
  assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: cannot read")
  assert (broken / "state.json").read_text() == "{garbage"


def test_end_to_end_sigint_then_resume(tmp_path):
  run_dir = tmp_path / "run"
  # --confirm 0: one ledger row per executed trial, so the row counts below are exact.
  args = ["--preset", "tiny", "--agent", "random", "--noise-repeats", "1", "--confirm", "0", "--run-dir", str(run_dir)]
  proc = run_main(*args, "--max-experiments", "5")
  ledger = run_dir / "trials.jsonl"
  deadline = time.time() + 400
  while not (ledger.exists() and ledger.read_text().count("\n") >= 1) and time.time() < deadline:
    time.sleep(0.5)
  proc.send_signal(signal.SIGINT)  # finish the trial in flight, save, exit 0
  out, err = proc.communicate(timeout=400)
  assert proc.returncode == 0, err[-3000:]
  assert "stop_reason: signal" in out
  # stderr is not a terminal: the display prints plain progress lines (from the worker's events), no live panel
  progress_line = r"^  trial 000000 +\d+% \| step \d+ \| loss [\d.]+ \| [\d,]+ tok/s \| MFU [\d.]+% \| "
  assert re.search(progress_line, err, re.M), err[-3000:]
  assert "\x1b[" not in err
  first = [json.loads(line) for line in ledger.read_text().splitlines()]
  assert 1 <= len(first) <= 2 and first[0]["status"] == "baseline" and first[0]["val_bpb"] > 0
  assert json.loads((run_dir / "state.json").read_text())["pending"] is None

  proc = run_main(*args, "--max-experiments", "3")
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  recs = [json.loads(line) for line in ledger.read_text().splitlines()]
  assert [r["trial_id"] for r in recs[:len(first)]] == [r["trial_id"] for r in first]  # nothing lost or redone
  assert len(recs) == 3 and len({r["trial_id"] for r in recs}) == 3
  assert "stop_reason: max-experiments" in out and "best_val_bpb: " in out
  assert (run_dir / "results.tsv").read_text().startswith("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n")


def test_final_report_states_the_keep_rule_and_sigma_with_its_interval(tmp_path):
  space = Space.from_dict({"x": {"choices": [0, 1, 2], "default": 0}})
  scores = iter([1.0, 1.01, 0.99, 1.5])   # 3 baselines (sigma 0.01, df 2), then one candidate
  loop = SearchLoop(space, CallableEvaluator(space, lambda p: next(scores), "env"), make_agent("random", seed=0),
                    str(tmp_path), Oracle(max_experiments=4, patience=None),
                    LoopConfig(noise_repeats=3, false_keep=0.1, confirm=2))
  report = arrl_main.final_report(loop, loop.run()).splitlines()
  # chi^2_{0.975, 2} = 7.3778, chi^2_{0.025, 2} = 0.050636: sigma in 0.01 * [sqrt(2 / 7.3778), sqrt(2 / 0.050636)].
  assert "sigma: 0.010000 (raw 0.010000, df 2, 95% CI [0.005207, 0.062847])" in report
  assert any(line.startswith("keep_rule: keep iff mean(best) - mean(candidate) > t(1-0.1, df)") and
             line.endswith("false-keep rate <= 10% per candidate that is no better") for line in report)
  assert "confirm_runs: 2" in report and "best_val_bpb: 1.000000" in report


def test_final_report_of_a_run_stopped_inside_its_baseline_says_so(tmp_path):
  space = Space.from_dict({"x": {"choices": [0, 1, 2], "default": 0}})
  scores = iter([1.0, 1.5])
  loop = SearchLoop(space, CallableEvaluator(space, lambda p: next(scores), "env"), make_agent("random", seed=0),
                    str(tmp_path), Oracle(max_experiments=2, patience=None), LoopConfig(noise_repeats=3))
  report = arrl_main.final_report(loop, loop.run()).splitlines()
  assert ("best_val_bpb: nan (the baseline is incomplete: 2 of 3 repeats, their mean 1.250000; no candidate was "
          "tried)") in report


def test_two_workers_run_the_baselines_at_once(tmp_path):
  if len(os.sched_getaffinity(0)) < 2:
    pytest.skip("needs 2 cores")
  run_dir = tmp_path / "run"
  proc = run_main("--preset", "tiny", "--agent", "random", "--noise-repeats", "2", "--workers", "2",
                  "--max-experiments", "2", "--run-dir", str(run_dir))
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert "| 2 workers" in err and "stop_reason: max-experiments" in out
  recs = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
  assert [r["status"] for r in recs] == ["baseline", "baseline"]
  first_end = min(r["finished_at"] for r in recs)
  assert all(r["started_at"] < first_end for r in recs)   # in flight together, not one after the other
