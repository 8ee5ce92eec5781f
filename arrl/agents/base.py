"""The agent interface: propose from the current state; observe a result."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import numpy as np

from arrl import tree as tree_lib
from arrl.space import Space
from arrl.trial import Status


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
  status: Status                     # keep | discard | crash | diverged | timeout | compile-timeout | aborted
  score: float | None                # val-bpb (or the objective), the mean over a confirmed candidate's runs —
                                     # lower is better; None when no result
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
  in_flight: tuple = ()              # programs proposed and still running (parallel workers): not to propose


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
  """Programs the loop has measured, is running as the kept one, or has in flight (parallel workers)."""
  return {state.current, *(o.tree for o in state.history), *state.in_flight}


def sample_new(space: Space, seen: Callable[[Any], bool], rng: np.random.Generator, tries: int = 1000) -> Any:
  """A uniform random program not `seen` (the last draw when `tries` draws all were: an exhausted space)."""
  for _ in range(tries):
    tree = space.sample(rng)
    if not seen(tree):
      break
  return tree


IN_FLIGHT_RETRIES = 20   # proposals asked of an agent before giving up on finding a program not in flight


def propose_batch(agent: Agent, state: SearchState, n: int) -> list[Proposal]:
  """Up to `n` proposals for free workers, none of them a program in flight or repeated in the batch.

  An agent with its own `propose_batch` (ppo) is asked directly. Any other agent is asked one proposal at a
  time, each time with the batch so far added to `state.in_flight` (tpe treats those as running trials,
  Optuna's constant liar); a proposal of a program in flight is asked again, up to IN_FLIGHT_RETRIES times.
  Fewer than `n` (even none) come back only when the agent keeps proposing programs in flight: the loop
  then waits for a trial to finish. With nothing in flight and n = 1 this is exactly `agent.propose(state)`.
  """
  if hasattr(agent, "propose_batch"):
    return agent.propose_batch(state, n)
  out: list[Proposal] = []
  busy = {tree_lib.digest(t) for t in state.in_flight}
  for _ in range(n):
    for _ in range(IN_FLIGHT_RETRIES):
      prop = agent.propose(dataclasses.replace(state, in_flight=(*state.in_flight, *(p.tree for p in out))))
      if tree_lib.digest(prop.tree) not in busy:
        busy.add(tree_lib.digest(prop.tree))
        out.append(prop)
        break
    else:
      break
  return out
