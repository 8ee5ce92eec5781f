import json
import math

import numpy as np
import pytest

import arrl.search
from arrl.agents import AGENTS, make_agent

SPACE = {f"x{i}": {"choices": list(range(6))} for i in range(5)}
TARGET = [5, 0, 3, 2, 4]


def objective(p: dict) -> float:
  return float(sum(abs(v - t) for v, t in zip(p.values(), TARGET)))


@pytest.mark.parametrize("agent", ["random", "greedy", "evolution"])
def test_same_seed_same_trials_and_best_is_min(agent):
  a = arrl.search.search(SPACE, objective, agent=agent, max_trials=40, seed=1)
  b = arrl.search.search(SPACE, objective, agent=agent, max_trials=40, seed=1)
  assert [(t.params, t.score, t.status) for t in a.trials] == [(t.params, t.score, t.status) for t in b.trials]
  assert a.best.score == min(t.score for t in a.trials if t.score is not None)
  assert a.best.score < objective(a.trials[0].params)  # it improved on the default program
  assert sum(not t.cached for t in a.trials) == 40 and a.stop_reason == "max-experiments"
  c = arrl.search.search(SPACE, objective, agent=agent, max_trials=40, seed=2)
  assert [t.params for t in c.trials] != [t.params for t in a.trials]


def test_trials_carry_params_scores_and_keep_decisions():
  res = arrl.search.search(SPACE, objective, agent="greedy", max_trials=30, seed=0)
  assert res.trials[0].status == "baseline" and res.trials[0].params == {k: 0 for k in SPACE}
  best = objective(res.trials[0].params)
  for t in res.trials[1:]:
    assert t.score == objective(t.params)
    if t.status == "keep":
      assert t.score < best
      best = t.score
    elif t.status == "discard":
      assert t.score >= best


def test_crashing_and_nonfinite_objectives_are_recorded_not_raised():
  def flaky(p):
    if p["x0"] == 1:
      raise RuntimeError("boom")
    return math.nan if p["x0"] == 2 else objective(p)
  res = arrl.search.search(SPACE, flaky, agent="random", max_trials=60, seed=0)
  statuses = {t.status for t in res.trials}
  assert {"crash", "diverged"} <= statuses
  assert all(t.score is None for t in res.trials if t.status in ("crash", "diverged"))


def test_already_measured_programs_are_not_re_evaluated():
  calls = []
  tiny = {"a": {"choices": [0, 1]}, "b": {"choices": [0, 1]}}
  res = arrl.search.search(tiny, lambda p: calls.append(dict(p)) or 2 - p["a"] - p["b"], agent="random",
                           max_trials=10, seed=0)
  assert len(calls) == len({json.dumps(c, sort_keys=True) for c in calls}) == 4  # each point evaluated once
  assert res.stop_reason.startswith("exhausted") and any(t.cached for t in res.trials)


def test_ppo_with_a_run_dir_checkpoints_beside_the_ledger_and_resumes(tmp_path):
  run_dir = str(tmp_path / "run")
  res = arrl.search.search(SPACE, objective, agent="ppo", max_trials=9, seed=0, run_dir=run_dir)
  with open(tmp_path / "run" / "state.json") as f:
    weights = json.load(f)["agent"]["weights"]
  assert weights == {"orbax_step": 1, "orbax_base": 0}  # the network after the update at trial 8, not base64 in state.json
  assert (tmp_path / "run" / "ppo").is_dir()
  again = arrl.search.search(SPACE, objective, agent="ppo", max_trials=9, seed=0, run_dir=run_dir)
  assert [t.params for t in again.trials] == [t.params for t in res.trials]  # resumed: nothing new to run


def test_evolution_is_aging_with_tournaments():
  agent = make_agent("evolution", seed=0, population=8, sample=3)
  res = arrl.search.search(SPACE, objective, agent="evolution", max_trials=60, seed=0,
                           agent_kwargs={"population": 8, "sample": 3})
  assert agent.P == 8 and agent.S == 3
  assert res.best.score <= 3
  with pytest.raises(ValueError, match="sample"):
    make_agent("evolution", population=3, sample=5)


def test_bad_inputs_fail_clearly():
  with pytest.raises(ValueError, match="unknown agent"):
    arrl.search.search(SPACE, objective, agent="nope", max_trials=5)
  with pytest.raises(ValueError):
    arrl.search.search({"a": {"choices": []}}, objective, max_trials=5)
  with pytest.raises(ValueError):
    arrl.search.search({"a": {"choice": [1]}}, objective, max_trials=5)
  with pytest.raises(ValueError, match="max_trials"):
    arrl.search.search(SPACE, objective, max_trials=0)
  with pytest.raises(TypeError):
    arrl.search.search([1, 2], objective, max_trials=5)


def test_registry_lists_the_simple_agents():
  assert {"random", "greedy", "evolution"} <= set(AGENTS)
  rng_state = make_agent("random", seed=5).state_dict()["rng"]
  assert rng_state == np.random.default_rng(5).bit_generator.state
