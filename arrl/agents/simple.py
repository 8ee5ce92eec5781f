"""Baseline agents: a random legal edit, uniform random sampling, and autoresearch-style greedy hill climbing."""
from __future__ import annotations

import numpy as np

from arrl import tree as tree_lib
from arrl.agents.base import (Outcome, Proposal, SearchState, measured, random_edit, rng_state, sample_new,
                              set_rng_state)


class RandomAgent:
  """A uniformly random legal edit of the current program among those leading to a program not measured yet.
  When every neighbour is measured it walks on (random edits from a random measured neighbour) until it
  finds a new program, so it does not re-propose cached programs until the space is exhausted."""
  name = "random"

  def __init__(self, seed: int = 0):
    self.rng = np.random.default_rng(seed)

  def propose(self, state: SearchState) -> Proposal:
    seen, space = measured(state), state.space
    tree, edits = state.current, []
    for _ in range(MAX_WALK):
      fresh = [e for e in space.legal_edits(tree) if space.apply(tree, e) not in seen]
      pool = fresh or space.legal_edits(tree)
      if not pool:
        raise ValueError("the program has no legal edit: the search space is a single point")
      edit = pool[int(self.rng.integers(len(pool)))]
      tree = space.apply(tree, edit)
      edits.append(edit)
      if fresh:
        break
    return Proposal(tree=tree, parent=state.current, edits=tuple(edits))

  def observe(self, state: SearchState, outcome: Outcome) -> None:
    del state, outcome

  def state_dict(self) -> dict:
    return {"rng": rng_state(self.rng)}

  def load_state_dict(self, d: dict) -> None:
    set_rng_state(self.rng, d["rng"])

  def entropy(self) -> float | None:
    return None


MAX_WALK = 32   # random edits a no-repeat agent walks before it gives up on finding a new program


class UniformAgent(RandomAgent):
  """Uniform random sampling of the space (`Space.sample`), never a measured program while new ones are found:
  the usual reference of NAS benchmarks."""
  name = "uniform"

  def propose(self, state: SearchState) -> Proposal:
    return Proposal(tree=sample_new(state.space, measured(state).__contains__, self.rng), parent=None)


class GreedyAgent(RandomAgent):
  """First-improvement hill climbing, as autoresearch runs it: try one edit of the current program,
  keep it if it beats the best by more than the noise (the loop decides), otherwise discard it.
  Unlike `random`, neighbours of the current program are tried without replacement; once all have
  failed (a local optimum) it jumps with two random edits."""
  name = "greedy"

  def __init__(self, seed: int = 0):
    super().__init__(seed)
    self.tried: set[str] = set()       # digests of neighbours tried from `self.anchor`
    self.anchor: str | None = None

  def propose(self, state: SearchState) -> Proposal:
    digest = tree_lib.digest(state.current)
    if digest != self.anchor:
      self.anchor, self.tried = digest, set()
    candidates = []
    for edit in state.space.legal_edits(state.current):
      child = state.space.apply(state.current, edit)
      if tree_lib.digest(child) not in self.tried:
        candidates.append((edit, child))
    if candidates:
      edit, child = candidates[int(self.rng.integers(len(candidates)))]
      self.tried.add(tree_lib.digest(child))
      return Proposal(tree=child, parent=state.current, edits=(edit,))
    first = random_edit(state.space, state.current, self.rng)
    mid = state.space.apply(state.current, first)
    second = random_edit(state.space, mid, self.rng)
    return Proposal(tree=state.space.apply(mid, second), parent=state.current, edits=(first, second),
                    info={"restart": True})

  def state_dict(self) -> dict:
    return {"rng": rng_state(self.rng), "anchor": self.anchor, "tried": sorted(self.tried)}

  def load_state_dict(self, d: dict) -> None:
    set_rng_state(self.rng, d["rng"])
    self.anchor, self.tried = d["anchor"], set(d["tried"])
