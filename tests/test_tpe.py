"""The TPE agent: valid proposals on flat, constrained and structured spaces; seeded; exact resume; learns."""
import functools
import json

import numpy as np
import pytest

import arrl.search
from arrl.agents import AGENTS, make_agent
from arrl.agents.base import Outcome, SearchState
from arrl.agents.tpe import TPEAgent, encode
from arrl.nanochat_space import nanochat_space
from arrl.space import Space

FLAT = {f"x{i}": {"choices": list(range(5))} for i in range(4)}
TARGET = (4, 0, 3, 1)


def separable(p: dict) -> float:
  return float(sum((p[f"x{i}"] - t) ** 2 for i, t in enumerate(TARGET)))


def no_two_equal_neighbours(tree):
  xs = [tree[f"x{i}"] for i in range(4)]
  return "equal neighbours" if any(a == b for a, b in zip(xs[1:], xs[2:])) else None


@functools.lru_cache(maxsize=None)
def _nanochat():
  return nanochat_space("tiny")


def _state(space: Space, history=()) -> SearchState:
  return SearchState(space=space, current=space.default(), best_score=None, sigma=0.0, history=list(history),
                     budget_used=0.0)


def _drive(agent: TPEAgent, space: Space, objective, n: int) -> list:
  """Propose/observe n times outside the loop; returns the proposed trees."""
  trees = []
  for i in range(n):
    prop = agent.propose(_state(space))
    space.validate(prop.tree)
    trees.append(prop.tree)
    score = objective(space.to_params(prop.tree))
    agent.observe(_state(space), Outcome(trial_id=str(i), tree=prop.tree, parent=None, edits=(), status="keep",
                                         score=score, kept=False, best_before=None, sigma=0.0))
  return trees


def test_registered_lazily_and_bad_options_fail():
  assert "tpe" in AGENTS and make_agent("tpe", seed=3).seed == 3
  with pytest.raises(ValueError, match="n_startup_trials"):
    make_agent("tpe", n_startup_trials=0)


def test_proposals_satisfy_constraints_and_encode_round_trips():
  space = Space.from_dict(FLAT, constraints=(no_two_equal_neighbours,))
  agent = TPEAgent(seed=0, n_startup_trials=5)
  trees = _drive(agent, space, separable, 30)
  assert all(no_two_equal_neighbours(t) is None for t in trees)
  for t in trees:  # the encoded indices pick the tree's values back
    enc = encode(space, t)
    assert {k.split("|")[0]: FLAT[k.split("|")[0]]["choices"][i] for k, (i, _) in enc.items()} == space.to_params(t)
  told = [t for t in agent.study.trials if t.state.name == "COMPLETE"]
  assert len(told) == 30 and len(agent.history) == 30


def test_structured_space_variants_and_lists_are_searched():
  space = _nanochat()
  agent = TPEAgent(seed=1, n_startup_trials=5)
  trees = _drive(agent, space, lambda p: float(len(p["model.window_pattern"])), 25)
  params = [space.to_params(t) for t in trees]
  assert len({p["model.mlp"] for p in params}) > 1           # module variants are drawn
  assert len({len(p["model.window_pattern"]) for p in params}) > 1  # list lengths too
  for t in trees:
    assert space.from_params(space.to_params(t)) == t


@pytest.mark.parametrize("seed", [0, 5])
def test_same_seed_same_sequence_and_exact_resume(tmp_path, seed):
  run = lambda n, d=None: arrl.search.search(FLAT, separable, agent="tpe", max_trials=n, seed=seed, run_dir=d)
  a, b = run(24), run(24)
  assert [t.params for t in a.trials] == [t.params for t in b.trials]
  assert [t.params for t in run(24).trials] != [t.params for t in
                                                 arrl.search.search(FLAT, separable, agent="tpe", max_trials=24,
                                                                    seed=seed + 1).trials]
  half = run(12, str(tmp_path / "r"))
  resumed = run(24, str(tmp_path / "r"))  # the same run dir: the agent is rebuilt from state_dict
  assert len(half.trials) < len(resumed.trials)
  assert [t.params for t in resumed.trials] == [t.params for t in a.trials]


def test_finds_the_optimum_of_a_small_separable_space():
  hits = [arrl.search.search(FLAT, separable, agent="tpe", max_trials=60, seed=s).best.score for s in range(3)]
  assert hits == [0.0, 0.0, 0.0]  # 625 points; random search finds the optimum in 60 tries ~9% of the time


def test_failed_trials_are_told_the_worst_score_and_fallback_sampling():
  space = Space.from_dict(FLAT)
  agent = TPEAgent(seed=0)
  fail = lambda tree: Outcome(trial_id="f", tree=tree, parent=None, edits=(), status="crash", score=None,
                              kept=False, best_before=None, sigma=0.0)
  agent.observe(_state(space), fail(space.default()))
  assert agent.history == []  # nothing to compare a failure with yet
  _drive(agent, space, separable, 3)
  worst = max(v for _, v in agent.history)
  agent.observe(_state(space), fail(space.default()))
  assert agent.history[-1][1] == worst
  only_default = Space.from_dict(FLAT, constraints=(lambda t: None if t["x0"] in (0, 1) else "x0 must be 0 or 1",))
  picky = TPEAgent(seed=0, max_asks=1)
  infos = [picky.propose(_state(only_default)).info for _ in range(12)]
  assert any(i.get("fallback") == "sample" for i in infos) and all(i["asks"] == 1 for i in infos)


def test_state_dict_is_json_and_replays():
  space = Space.from_dict(FLAT)
  agent = TPEAgent(seed=2, n_startup_trials=3)
  _drive(agent, space, separable, 8)
  d = json.loads(json.dumps(agent.state_dict()))
  other = TPEAgent(seed=99, n_startup_trials=3)  # options come from the constructor, the rest from the state
  other.load_state_dict(d)
  assert np.array_equal([t.value for t in other.study.trials], [v for _, v in agent.history])
  assert other.propose(_state(space)).tree == agent.propose(_state(space)).tree
