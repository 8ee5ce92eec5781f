"""A warm-start portfolio: programs that were good across the training tasks of one space, tried first on a
new task of that space (meta-learned initial designs: Feurer et al. 2015, Wistuba et al. 2015).

    python -m arrl.fit_portfolio --out runs/portfolio.json     # NAS-Bench-Graph training tables
    Portfolio.load(path).trees(space)                          # its programs that are legal in `space`

Fitted greedily: each next program is the one that lowers most the mean over the training tasks of the best
normalised regret the portfolio reaches on each (its first program is the best one on average). It ships beside
the pretrained network (`arrl/ppo/pretrained/portfolio.json`): the `ppo` agent that starts from that network
proposes the portfolio's programs first, then its network's (`arrl.agents.warm`; any agent can be given a
portfolio). A space with other fields or values gets only the programs that are legal in it (none, for a space
it was not fitted on).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from arrl.space import Space

PORTFOLIO_FILE = "portfolio.json"   # its name beside a pretrained network
# the one in arrl.ppo.checkpoint.PRETRAINED (spelled out here: that module loads JAX, this one must not)
SHIPPED_PORTFOLIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ppo", "pretrained", PORTFOLIO_FILE)


def greedy(regrets: np.ndarray, k: int) -> list[int]:
  """Indices of up to `k` candidates chosen one by one to minimise the mean over tasks of the min regret among
  those chosen (`regrets`: [tasks, candidates], nan where a task cannot run a candidate); it stops early when no
  candidate lowers that mean (a duplicate of a chosen program adds nothing)."""
  if regrets.ndim != 2 or not regrets.shape[1] or np.isnan(regrets).all():
    raise ValueError(f"regrets must be [tasks, candidates] with some candidate runnable, got shape {regrets.shape}")
  worst = np.nanmax(regrets) + 1.0           # a task that cannot run a candidate gains nothing from it
  r = np.where(np.isnan(regrets), worst, regrets)
  best = np.full(r.shape[0], worst)
  chosen: list[int] = []
  while len(chosen) < k:
    mean = np.minimum(r, best[:, None]).mean(0)
    i = int(np.argmin(mean))
    if chosen and mean[i] >= best.mean():
      break
    chosen.append(i)
    best = np.minimum(best, r[:, i])
  return chosen


@dataclasses.dataclass(frozen=True)
class Portfolio:
  programs: tuple[dict[str, Any], ...]       # {field path: value}, in the order they are tried
  meta: dict[str, Any]                       # how it was fitted: command, tasks, each program's regrets

  def trees(self, space: Space) -> list[Any]:
    """The programs that are legal in `space`, as its trees (a program with other fields is skipped)."""
    fields = set(space.to_params(space.default()))
    out = []
    for params in self.programs:
      if set(params) != fields:
        continue
      try:
        tree = space.from_params(params)   # validated there
      except ValueError:
        continue
      out.append(tree)
    return out

  def save(self, path: str) -> None:
    with open(path, "w") as f:
      json.dump({"programs": list(self.programs), "meta": self.meta}, f, indent=1)
      f.write("\n")

  @classmethod
  def load(cls, path: str) -> "Portfolio":
    try:
      with open(path) as f:
        d = json.load(f)
      return cls(tuple(dict(p) for p in d["programs"]), dict(d["meta"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ValueError(f"{path} is not a portfolio file (`python -m arrl.fit_portfolio` writes one): {e}") from None
