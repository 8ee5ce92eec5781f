"""Cost of the PPO agent per trial: propose + observe (which runs the update every N trials).

Runs `arrl.search` with a timing wrapper around the agent on a flat 8x8 space (with and without orbax
checkpoints at every update) and on the nanochat gpu-preset space, and prints JSON: mean/p90 seconds per
propose, per update, and the amortised propose+update cost per trial after the first two updates (the
first calls, which compile, are reported apart). Target: per_trial_s <= ~1 s on 2 CPU cores.

    python benchmarks/ppo_cost.py [--trials 80] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from arrl.agents import register_agent
from arrl.ppo import PPOAgent
from arrl.search import search


class TimedPPO(PPOAgent):
  def __init__(self, seed: int = 0, **options):
    super().__init__(seed=seed, **options)
    self.propose_s: list[float] = []
    self.observe_s: list[float] = []

  def propose(self, state):
    t = time.perf_counter()
    out = super().propose(state)
    self.propose_s.append(time.perf_counter() - t)
    return out

  def observe(self, state, outcome):
    t = time.perf_counter()
    super().observe(state, outcome)
    self.observe_s.append(time.perf_counter() - t)


def _summary(agent: TimedPPO, every: int) -> dict:
  warm = 2 * every  # skip the trials whose calls compiled (first proposals and first two updates)
  prop, obs = np.array(agent.propose_s[warm:]), np.array(agent.observe_s[warm:])
  updates = obs[np.arange(len(obs)) % every == every - 1]
  return {"trials": len(agent.propose_s), "first_propose_s": agent.propose_s[0],
          "first_update_s": agent.observe_s[every - 1] if len(agent.observe_s) >= every else None,
          "propose_mean_s": float(prop.mean()), "propose_p90_s": float(np.quantile(prop, 0.9)),
          "update_mean_s": float(updates.mean()) if len(updates) else None,
          "per_trial_s": float((prop.sum() + obs.sum()) / max(1, len(prop)))}


def run(space, objective, trials: int, seed: int, **agent_kwargs) -> dict:
  agents: list[TimedPPO] = []

  def factory(seed: int = 0, **options):
    agents.append(TimedPPO(seed=seed, **options))
    return agents[-1]

  register_agent("ppo-timed", factory)
  t = time.perf_counter()
  search(space, objective, agent="ppo-timed", max_trials=trials, seed=seed, agent_kwargs=agent_kwargs)
  out = _summary(agents[-1], agents[-1].cfg.update_every)
  out["wall_s"] = time.perf_counter() - t
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--trials", type=int, default=80)
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args()
  rng = np.random.default_rng(args.seed)
  costs = rng.uniform(0, 1, size=(8, 8))
  flat = {f"f{i}": {"choices": list(range(8))} for i in range(8)}
  def flat_cost(p: dict) -> float:
    return float(sum(costs[i, p[f"f{i}"]] for i in range(8)))

  results = {"flat_8x8": run(flat, flat_cost, args.trials, args.seed)}
  with tempfile.TemporaryDirectory() as d:
    results["flat_8x8_orbax"] = run(flat, flat_cost, args.trials, args.seed, ckpt_dir=os.path.join(d, "ppo"))
  try:
    from arrl.nanochat_space import nanochat_space
  except ImportError as e:
    results["nanochat_gpu"] = f"skipped: {e}"
  else:
    space = nanochat_space("gpu")
    keys = sorted(space.to_params(space.default()))
    weights = {k: float(w) for k, w in zip(keys, rng.normal(size=len(keys)))}

    def proxy(p: dict) -> float:  # a cheap stand-in objective: any deterministic function of the program
      return sum(w * (hash(str(p[k])) % 97) / 97 for k, w in weights.items())

    results["nanochat_gpu"] = run(space, proxy, args.trials, args.seed)
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  main()
