"""Any agent, warm-started: a portfolio's programs (`arrl.portfolio`) are proposed first, then the agent's own.

The portfolio's programs that are legal in the space are proposed in order, each once, skipping those measured
already or in flight; the wrapped agent observes every outcome (its history holds the portfolio's trials too; the
ppo agent learns only from its own proposals). With no legal program (another space) it is the agent itself.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from arrl.agents.base import Outcome, Proposal, SearchState, measured, propose_batch
from arrl.portfolio import Portfolio


class WarmStarted:
  def __init__(self, inner: Any, portfolio: Portfolio):
    self.inner, self.portfolio, self.name = inner, portfolio, inner.name
    self.used = 0                      # portfolio programs proposed or skipped
    self._trees: list | None = None    # the portfolio's programs legal in the space (known at the first proposal)

  def _warm(self, state: SearchState, n: int) -> list[Proposal]:
    if self._trees is None:
      self._trees = self.portfolio.trees(state.space)
    if self.used >= len(self._trees):   # used up (or none legal here): no need to gather the measured programs
      return []
    seen, out = measured(state), []
    while len(out) < n and self.used < len(self._trees):
      tree = self._trees[self.used]
      self.used += 1
      if tree not in seen:
        seen.add(tree)
        out.append(Proposal(tree=tree, parent=None, info={"warm_start": self.used - 1}))
    return out

  def propose(self, state: SearchState) -> Proposal:
    warm = self._warm(state, 1)
    return warm[0] if warm else self.inner.propose(state)

  def propose_batch(self, state: SearchState, n: int) -> list[Proposal]:
    out = self._warm(state, n)
    if len(out) < n:
      busy = dataclasses.replace(state, in_flight=(*state.in_flight, *(p.tree for p in out)))
      out += propose_batch(self.inner, busy, n - len(out))
    return out

  def observe(self, state: SearchState, outcome: Outcome) -> None:
    self.inner.observe(state, outcome)

  def entropy(self) -> float | None:
    return self.inner.entropy()

  def state_dict(self) -> dict:
    return {**self.inner.state_dict(), "warm_used": self.used}   # the agent's own state, one key added

  def load_state_dict(self, d: dict) -> None:
    self.inner.load_state_dict({k: v for k, v in d.items() if k != "warm_used"})
    # saved by the agent alone (a run begun without a portfolio): the portfolio counts as used
    self.used = int(d.get("warm_used", len(self.portfolio.programs)))
