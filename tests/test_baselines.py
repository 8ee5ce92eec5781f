"""The baselines ppo is measured against: random without repeats, uniform sampling, local search."""
import json

import pytest

import arrl.search
from arrl import tree as tree_lib
from arrl.agents import make_agent
from arrl.space import Space

from search_sim import Sim
from test_search import SPACE, objective


@pytest.mark.parametrize("agent", ["random", "uniform", "local"])
def test_no_measured_program_is_proposed_again_while_new_ones_exist(agent):
  res = arrl.search.search(SPACE, objective, agent=agent, max_trials=120, seed=3)
  assert not any(t.cached for t in res.trials)
  assert len({json.dumps(t.params, sort_keys=True) for t in res.trials}) == len(res.trials) == 120


def test_random_exhausts_a_tiny_space_only_after_measuring_all_of_it():
  tiny = {"a": {"choices": [0, 1, 2]}, "b": {"choices": [0, 1]}}
  res = arrl.search.search(tiny, lambda p: p["a"] + p["b"], agent="random", max_trials=20, seed=0)
  first = [t for t in res.trials[:6]]
  assert not any(t.cached for t in first) and res.stop_reason.startswith("exhausted")


def test_local_search_measures_the_whole_neighbourhood_then_moves_to_its_best():
  space = Space.from_dict(SPACE)
  loop, agent = Sim(space, objective), make_agent("local", seed=0)
  start = space.default()
  neighbours = {space.apply(start, e) for e in space.legal_edits(start)}
  first = [loop.step(agent) for _ in range(len(neighbours))]
  assert {p.tree for p in first} == neighbours and all(p.parent == start for p in first)
  best = min(neighbours, key=lambda t: objective(space.to_params(t)))
  assert loop.step(agent).parent == best  # best improvement, not first improvement


def test_local_search_restarts_at_a_local_optimum_and_resumes_from_its_state():
  space = Space.from_dict(SPACE)
  loop, agent = Sim(space, lambda p: 0.0 if p == {f"x{i}": 0 for i in range(5)} else 1.0), make_agent("local")
  for _ in range(25):  # the default is the optimum: 25 neighbours, none better
    assert loop.step(agent).parent == space.default()
  restart = loop.step(agent)
  assert restart.parent is None and restart.info["phase"] == "restart" and agent.restarts == 1
  twin = make_agent("local", seed=9)
  twin.load_state_dict(json.loads(json.dumps(agent.state_dict())))
  nxt = agent.propose(loop.state())
  assert nxt.parent == restart.tree and tree_lib.digest(twin.propose(loop.state()).tree) == tree_lib.digest(nxt.tree)
