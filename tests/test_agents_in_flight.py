"""Parallel workers: no agent proposes a program that is in flight (arrl.agents.base.propose_batch)."""
from __future__ import annotations

import dataclasses

import pytest

from arrl import tree as tree_lib
from arrl.agents import AGENTS, make_agent
from arrl.agents.base import Outcome, SearchState, propose_batch
from arrl.space import Space

SPACE = Space.from_dict({f"x{i}": {"choices": list(range(4)), "default": 0} for i in range(3)})


def _state(history=(), in_flight=()) -> SearchState:
  return SearchState(space=SPACE, current=SPACE.default(), best_score=1.0, sigma=0.01, history=list(history),
                     budget_used=0.1, in_flight=tuple(in_flight))


def _digests(props) -> list[str]:
  return [tree_lib.digest(p.tree) for p in props]


@pytest.mark.parametrize("name,options", [*((n, {}) for n in sorted(AGENTS)), ("tpe", {"constant_liar": False})])
def test_no_agent_proposes_a_program_in_flight(name, options):
  agent = make_agent(name, seed=1, **options)
  history = []
  for i, prop in enumerate(propose_batch(agent, _state(), 3)):   # a few observed trials first
    out = Outcome(trial_id=str(i), tree=prop.tree, parent=prop.parent, edits=prop.edits, status="discard",
                  score=1.0 + 0.1 * i, kept=False, best_before=1.0, sigma=0.01, info=prop.info)
    history.append(out)
    agent.observe(_state(history), out)
  first = propose_batch(agent, _state(history), 4)
  assert len(set(_digests(first))) == len(first) == 4
  second = propose_batch(agent, _state(history, in_flight=[p.tree for p in first]), 4)
  assert second and len(set(_digests(second))) == len(second)
  assert not set(_digests(first)) & set(_digests(second))


def test_an_agent_stuck_on_programs_in_flight_gives_fewer_proposals():
  class Stuck:
    name = "stuck"

    def propose(self, state):
      return dataclasses.replace(make_agent("random").propose(state), tree=SPACE.default())

  assert propose_batch(Stuck(), _state(in_flight=[SPACE.default()]), 2) == []
  assert len(propose_batch(Stuck(), _state(), 2)) == 1   # the second would repeat the first
