"""The agent interface: propose from the current state; observe a result."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import numpy as np

from arrl.space import Space


@dataclasses.dataclass(frozen=True)
class Proposal:
  tree: Any                          # the program to run
  parent: Any                        # the tree it was derived from (None for a fresh sample)
  edits: tuple = ()                  # edits applied to `parent` to get `tree`
  info: dict = dataclasses.field(default_factory=dict)  # agent data kept in the ledger (log-probs, value, ...)


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What an agent learns from one finished trial."""
  trial_id: str
  tree: Any
  parent: Any
  edits: tuple
  status: str                        # keep | discard | crash | diverged | timeout | compile-timeout | aborted
  score: float | None                # val-bpb (or the objective) — lower is better; None when no result
  kept: bool
  best_before: float | None          # best kept score before this trial
  sigma: float                       # run-to-run noise of the score
  info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SearchState:
  """What the loop shows an agent when asking for a proposal."""
  space: Space
  current: Any                       # the kept program edits start from
  best_score: float | None
  sigma: float
  history: list[Outcome]
  budget_used: float                 # share of the run's resources used, in [0, 1]


class Agent(Protocol):
  name: str

  def propose(self, state: SearchState) -> Proposal: ...

  def observe(self, state: SearchState, outcome: Outcome) -> None: ...

  def state_dict(self) -> dict: ...

  def load_state_dict(self, d: dict) -> None: ...

  def entropy(self) -> float | None: ...


def rng_state(rng: np.random.Generator) -> dict:
  return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
  rng.bit_generator.state = state


def random_edit(space: Space, tree: Any, rng: np.random.Generator) -> Any:
  edits = space.legal_edits(tree)
  if not edits:
    raise ValueError("the program has no legal edit: the search space is a single point")
  return edits[int(rng.integers(len(edits)))]


def measured(state: SearchState) -> set:
  """Programs the loop has measured (or is running as the kept one)."""
  return {state.current, *(o.tree for o in state.history)}


def sample_new(space: Space, seen: Callable[[Any], bool], rng: np.random.Generator, tries: int = 1000) -> Any:
  """A uniform random program not `seen` (the last draw when `tries` draws all were: an exhausted space)."""
  for _ in range(tries):
    tree = space.sample(rng)
    if not seen(tree):
      break
  return tree
