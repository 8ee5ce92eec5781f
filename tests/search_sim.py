"""The loop's bookkeeping in memory, for agent tests: run each proposal, keep it iff it beats the best."""
from __future__ import annotations

from typing import Any, Callable

from arrl.agents.base import Outcome, SearchState
from arrl.space import Space


class Sim:
  def __init__(self, space: Space, objective: Callable[[dict], float]):
    self.space, self.objective = space, objective
    self.current = space.default()
    self.best = objective(space.to_params(self.current))
    self.history: list[Outcome] = []

  def state(self) -> SearchState:
    return SearchState(space=self.space, current=self.current, best_score=self.best, sigma=0.0,
                       history=self.history, budget_used=len(self.history) / 100)

  def finish(self, prop) -> Outcome:
    score = self.objective(self.space.to_params(prop.tree))
    kept = score < self.best
    out = Outcome(trial_id=str(len(self.history)), tree=prop.tree, parent=prop.parent, edits=prop.edits,
                  status="keep" if kept else "discard", score=score, kept=kept, best_before=self.best, sigma=0.0,
                  info=prop.info)
    if kept:
      self.current, self.best = prop.tree, score
    self.history.append(out)
    return out

  def step(self, agent: Any):
    prop = agent.propose(self.state())
    agent.observe(self.state(), self.finish(prop))
    return prop
