"""benchmarks.aa_check's logic on a fake executor: no training, the same loop and evaluator path."""
import json
import random

import pytest

from arrl.loop import LoopConfig
from arrl.runner import TrialResult
from benchmarks import aa_check


class FakeExecutor:
  """Scores a run from its seed (plus 0.05 when busy loops run beside it); records what it saw."""

  def __init__(self):
    self.outer, self.seen = None, []

  def run(self, job, monitor=None, cancel=None):
    busy = bool(self.outer.load) and all(p.poll() is None for p in self.outer.load)
    seed = job.payload["seed"]
    self.seen.append((job.trial_id, seed, busy))
    score = 1.0 + random.Random(seed).gauss(0, 0.01) + 0.05 * busy
    return TrialResult(trial_id=job.trial_id, status="ok", val_bpb=score, training_seconds=30.0,
                       num_steps=40 - 10 * busy)


def test_aa_check_runs_the_loop_on_the_same_program_and_reports_both_rules(tmp_path):
  fake = FakeExecutor()
  executor = aa_check.LoadedExecutor(fake, share=0.5, procs=1, seed=0)
  fake.outer = executor
  loop = aa_check.make_loop(str(tmp_path / "run"), "tiny", 30.0, 60.0, executor, LoopConfig(noise_repeats=3),
                            env_digest="test")
  reports = []
  aa_check.run_check(loop, 20, lambda: reports.append(len(loop.ledger)))
  recs = aa_check.rows(loop)
  cands = aa_check.candidates(recs)
  assert len(cands) == 20 and len({r["digest"] for r in recs}) == 1 and reports[-1] == len(recs)
  assert sorted(s for _, s, _ in fake.seen) == list(range(len(recs)))      # every run on its own seed
  assert [busy for t, _, busy in fake.seen] == [aa_check.is_loaded(t, 0.5, 0) for t, _, _ in fake.seen]
  assert 0 < sum(busy for *_, busy in fake.seen) < len(fake.seen) and executor.load == []
  s = aa_check.summarize(loop, 0.5, 0, {"start": [1.0, 1.0, 1.0], "end": [1.0, 1.0, 1.0]})
  assert s["rule"]["kept"] == sum(r["status"] == "keep" for r in cands) and s["candidates"] == 20
  assert s["loaded_runs"]["mean_steps"] == 30 and s["quiet_runs"]["mean_steps"] == 40
  assert s["loaded_runs"]["runs"] + s["quiet_runs"]["runs"] == len(recs) == s["all_runs"]["runs"]
  assert s["sigma"]["dof"] == loop.noise().dof and s["sigma"]["ci95"][0] < s["sigma"]["raw"] < s["sigma"]["ci95"][1]
  md = aa_check.markdown(s, "t")
  assert f"| {s['rule']['kept']} / 20 |" in md and md.count("\n| 0000") == len(recs)


def test_old_rule_replay():
  # sigma = 0.02 / sqrt(2) = 0.01414, best 1.01: the margin is 0.0283; a keep moves the best.
  assert aa_check.old_rule_keeps([1.0, 1.02, 0.5], [0.99, 0.98, 0.96, None, 0.95]) == [False, True, False, False, True]


def test_binomial_interval():
  assert aa_check.binomial_ci(0, 20) == pytest.approx((0.0, 0.1684), abs=1e-4)   # 1 - 0.025 ** (1 / 20)
  lo, hi = aa_check.binomial_ci(1, 20)
  assert lo == pytest.approx(0.00127, abs=1e-5) and hi == pytest.approx(0.2487, abs=1e-4)


def test_replay_makes_the_decisions_of_the_measured_runs(tmp_path):
  # A check on a fake executor whose score is a function of the seed, then the same check replayed on its json.
  fake = FakeExecutor()
  fake.outer = aa_check.LoadedExecutor(fake, share=0.0)
  live = aa_check.make_loop(str(tmp_path / "live"), "tiny", 30.0, 60.0, fake.outer, LoopConfig(noise_repeats=3),
                            env_digest="test")
  aa_check.run_check(live, 12, lambda: None)
  measured = tmp_path / "aa.json"
  measured.write_text(json.dumps({"runs": aa_check.summarize(live, 0.0, 0, {"start": [], "end": []})["runs"]}))
  scores = aa_check.measured_scores(str(measured))
  assert sorted(scores) == list(range(len(fake.seen)))
  replay = aa_check.make_loop(str(tmp_path / "replay"), "tiny", 30.0, 60.0, aa_check.ReplayExecutor(scores),
                              LoopConfig(noise_repeats=3), env_digest="test")
  aa_check.run_check(replay, 12, lambda: None)
  key = lambda loop: [(r["trial_id"], r["status"], r["val_bpb"], r["seed"]) for r in aa_check.rows(loop)]
  assert key(replay) == key(live) and any(r["status"] == "discard" for r in aa_check.rows(live))
  with pytest.raises(aa_check.MissingSeed, match=f"seed {len(fake.seen)}"):
    aa_check.run_check(replay, 13, lambda: None)   # the next candidate needs a seed nobody measured


@pytest.mark.parametrize("runs, message", [
    ([{"seed": 1, "data_seed": 1, "steps": 9, "val_bpb": 1.0}, {"seed": 1, "data_seed": 1, "steps": 9, "val_bpb": 1.1}],
     "two different scores"),
    ([{"seed": 2, "data_seed": 0, "steps": 9, "val_bpb": 1.0}], "data-order seed 0"),
])
def test_replay_refuses_ambiguous_scores(tmp_path, runs, message):
  path = tmp_path / "runs.json"
  path.write_text(json.dumps({"runs": runs}))
  with pytest.raises(SystemExit, match=message):
    aa_check.measured_scores(str(path))
