"""Agents behind one small interface (`arrl.agents.base.Agent`), by name."""
from __future__ import annotations

import os
from typing import Any, Callable

from arrl.agents.evolution import EvolutionAgent
from arrl.agents.local import LocalSearchAgent
from arrl.agents.simple import GreedyAgent, RandomAgent, UniformAgent


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


def make_agent(name: str, seed: int = 0, **kwargs: Any):
  if name not in AGENTS:
    raise ValueError(f"unknown agent {name!r}; choose one of: {', '.join(sorted(AGENTS))}")
  return AGENTS[name](seed=seed, **kwargs)


def run_dir_options(name: str, run_dir: str) -> dict[str, Any]:
  """Options an agent takes from its run directory: ppo checkpoints its network (orbax) in RUN_DIR/ppo, beside
  the ledger, instead of inside the loop's state.json."""
  return {"ckpt_dir": os.path.join(os.path.abspath(run_dir), "ppo")} if name == "ppo" else {}


def register_agent(name: str, factory: Callable[..., Any]) -> None:
  AGENTS[name] = factory
