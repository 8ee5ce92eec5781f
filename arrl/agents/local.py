"""Local search as White et al. (2021, "Exploring the loss landscape in neural architecture search") run it:
from the current centre, measure its whole one-edit neighbourhood (one unmeasured neighbour per proposal,
in random order); then move to the best neighbour if it beats the centre, else — a local optimum — restart
from a uniformly random program. The first centre is the loop's starting program."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from arrl import tree as tree_lib
from arrl.edits import edit_from_dict
from arrl.agents.base import Outcome, Proposal, SearchState, measured, rng_state, sample_new, set_rng_state


class LocalSearchAgent:
  name = "local"

  def __init__(self, seed: int = 0):
    self.rng = np.random.default_rng(seed)
    self.center: Any = None
    self.queue: list | None = []         # (edit, neighbour) still to measure around the centre (None: not listed yet)
    self.scores: dict[str, float] = {}   # digest -> score of every measured program (inf: failed)
    self.restarts = 0

  def _score(self, tree: Any) -> float:
    return self.scores.get(tree_lib.digest(tree), math.inf)

  def _move_to(self, state: SearchState, center: Any) -> None:
    self.center = center
    pairs = [(e, state.space.apply(center, e)) for e in state.space.legal_edits(center)]
    self.queue = [pairs[i] for i in self.rng.permutation(len(pairs))]

  def propose(self, state: SearchState) -> Proposal:
    if self.center is None:
      self.scores[tree_lib.digest(state.current)] = math.inf if state.best_score is None else state.best_score
      self._move_to(state, state.current)
    elif self.queue is None:  # the restart point was just measured: its neighbourhood is next
      self._move_to(state, self.center)
    known = measured(state)
    seen = lambda t: t in known or tree_lib.digest(t) in self.scores  # the scores hold the starting program too
    for _ in range(2):  # the centre's neighbourhood, or the next centre's after a move
      self.queue = [(e, t) for e, t in self.queue if not seen(t)]
      if self.queue:
        edit, child = self.queue.pop(0)
        return Proposal(tree=child, parent=self.center, edits=(edit,), info={"phase": "neighbour"})
      neighbours = [state.space.apply(self.center, e) for e in state.space.legal_edits(self.center)]
      best = min(neighbours, key=self._score, default=None)
      if best is None or self._score(best) >= self._score(self.center):
        break
      self._move_to(state, best)
    self.restarts += 1  # a local optimum: the next centre is a random program, measured by this proposal
    self.center, self.queue = None, []
    tree = sample_new(state.space, seen, self.rng)
    return Proposal(tree=tree, parent=None, info={"phase": "restart"})

  def observe(self, state: SearchState, outcome: Outcome) -> None:
    del state
    self.scores[tree_lib.digest(outcome.tree)] = math.inf if outcome.score is None else float(outcome.score)
    if outcome.info.get("phase") == "restart" and self.center is None:
      self.center = outcome.tree
      self.queue = None  # filled at the next proposal (needs the space)

  def state_dict(self) -> dict:
    return {"rng": rng_state(self.rng), "scores": self.scores, "restarts": self.restarts,
            "center": tree_lib.to_json(self.center) if self.center is not None else None,
            "queue": None if self.queue is None else [[e.to_dict(), tree_lib.to_json(t)] for e, t in self.queue]}

  def load_state_dict(self, d: dict) -> None:
    set_rng_state(self.rng, d["rng"])
    self.scores, self.restarts = dict(d["scores"]), d["restarts"]
    self.center = tree_lib.from_json(d["center"]) if d["center"] is not None else None
    self.queue = None if d["queue"] is None else [(edit_from_dict(e), tree_lib.from_json(t)) for e, t in d["queue"]]

  def entropy(self) -> float | None:
    return None
