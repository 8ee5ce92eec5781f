"""Regularized (aging) evolution, Real et al. 2019: tournament selection, one-edit mutation, the
oldest member dies. Defaults suit budgets of a few hundred trials (the paper used P=100, S=25 over
thousands)."""
from __future__ import annotations

import collections
import math

import numpy as np

from arrl import tree as tree_lib
from arrl.agents.base import Outcome, Proposal, SearchState, random_edit, rng_state, set_rng_state


class EvolutionAgent:
  name = "evolution"

  def __init__(self, seed: int = 0, population: int = 20, sample: int = 5, init: str = "sample"):
    if not 1 <= sample <= population:
      raise ValueError(f"evolution needs 1 <= sample <= population, got sample={sample}, population={population}")
    if init not in ("sample", "mutate"):
      raise ValueError("init must be 'sample' (random trees) or 'mutate' (random edits of the current program)")
    self.rng = np.random.default_rng(seed)
    self.P, self.S, self.init = population, sample, init
    self.population: collections.deque = collections.deque()  # (tree, score), oldest first
    self.proposed = 0

  def propose(self, state: SearchState) -> Proposal:
    self.proposed += 1
    if self.proposed <= self.P:  # initial population
      if self.init == "sample":
        return Proposal(tree=state.space.sample(self.rng), parent=None, info={"phase": "init"})
      edit = random_edit(state.space, state.current, self.rng)
      return Proposal(tree=state.space.apply(state.current, edit), parent=state.current, edits=(edit,),
                      info={"phase": "init"})
    if not self.population:  # every initial trial is still unobserved (or failed before reporting)
      return Proposal(tree=state.space.sample(self.rng), parent=None, info={"phase": "init"})
    idx = self.rng.choice(len(self.population), size=min(self.S, len(self.population)), replace=False)
    parent = min((self.population[i] for i in idx), key=lambda m: m[1])[0]
    edit = random_edit(state.space, parent, self.rng)
    return Proposal(tree=state.space.apply(parent, edit), parent=parent, edits=(edit,), info={"phase": "evolve"})

  def observe(self, state: SearchState, outcome: Outcome) -> None:
    del state
    self.population.append((outcome.tree, math.inf if outcome.score is None else outcome.score))
    while len(self.population) > self.P:
      self.population.popleft()

  def state_dict(self) -> dict:
    return {"rng": rng_state(self.rng), "proposed": self.proposed,
            "population": [[tree_lib.to_json(t), s] for t, s in self.population]}

  def load_state_dict(self, d: dict) -> None:
    set_rng_state(self.rng, d["rng"])
    self.proposed = d["proposed"]
    self.population = collections.deque((tree_lib.from_json(t), s) for t, s in d["population"])

  def entropy(self) -> float | None:
    return None
