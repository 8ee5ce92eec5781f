"""Agents behind one small interface (`arrl.agents.base.Agent`), by name."""
from __future__ import annotations

import os
from typing import Any, Callable

from arrl.agents.evolution import EvolutionAgent
from arrl.agents.local import LocalSearchAgent
from arrl.agents.simple import GreedyAgent, RandomAgent, UniformAgent
from arrl.agents.warm import WarmStarted
from arrl.portfolio import PORTFOLIO_FILE, Portfolio

SHIPPED_NETWORK = "pretrained"   # the init_from that names the shipped network: the ppo agent's default


def _tpe(**kw: Any):
  from arrl.agents.tpe import TPEAgent  # optuna is imported only when TPE is used
  return TPEAgent(**kw)


def _ppo(**kw: Any):
  from arrl.ppo import PPOAgent  # imports JAX only when used
  return PPOAgent(**kw)


AGENTS: dict[str, Callable[..., Any]] = {
    "random": RandomAgent,
    "uniform": UniformAgent,
    "local": LocalSearchAgent,
    "greedy": GreedyAgent,
    "evolution": EvolutionAgent,
    "tpe": _tpe,
    "ppo": _ppo,
}


def make_agent(name: str, seed: int = 0, warm_start: str | None = None, **kwargs: Any):
  """The agent `name`; with `warm_start` (a portfolio file, `python -m arrl.fit_portfolio`) it proposes the
  portfolio's programs first (`arrl.agents.warm`). The ppo agent whose network directory holds a portfolio.json
  (the shipped one does) takes that one unless warm_start="none"."""
  if name not in AGENTS:
    raise ValueError(f"unknown agent {name!r}; choose one of: {', '.join(sorted(AGENTS))}")
  agent = AGENTS[name](seed=seed, **kwargs)
  path = portfolio_file(name, warm_start, kwargs.get("init_from", SHIPPED_NETWORK))
  return agent if path is None else WarmStarted(agent, Portfolio.load(path))


def portfolio_file(name: str, warm_start: str | None, init_from: str | None = SHIPPED_NETWORK) -> str | None:
  """The portfolio an agent made by `make_agent` starts with (None: none)."""
  if warm_start is None and name == "ppo":
    from arrl.ppo.checkpoint import pretrained_dir
    directory = pretrained_dir(init_from)
    path = os.path.join(directory, PORTFOLIO_FILE) if directory else None
    return path if path and os.path.exists(path) else None
  return None if warm_start in (None, "none") else warm_start


def run_dir_options(name: str, run_dir: str) -> dict[str, Any]:
  """Options an agent takes from its run directory: ppo checkpoints its network (orbax) in RUN_DIR/ppo, beside
  the ledger, instead of inside the loop's state.json."""
  return {"ckpt_dir": os.path.join(os.path.abspath(run_dir), "ppo")} if name == "ppo" else {}


def register_agent(name: str, factory: Callable[..., Any]) -> None:
  AGENTS[name] = factory
