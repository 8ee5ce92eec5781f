"""Cost of one meta-training iteration (`arrl.pretrain`), split into its two parts: the episodes (8 searches
x 100 trials on synthetic tasks, stepped together) and the jitted PPO update on the transitions they made.

Each part is run `--repeats` times after a first, compiling call; prints JSON with the median CPU seconds
(`time.process_time`, less sensitive to other processes on a shared machine than wall time), the median wall
seconds, simulated trials per CPU-minute and per wall-minute, and the load average. The update is always applied
to the same parameters, so every repeat does the same work.

    python -m benchmarks.pretrain_speed [--envs 8] [--trials 100] [--repeats 5] [--seed 1] [--surrogate] [--workers 2]

`--workers W`: the episodes are split between this process and W - 1 helpers (`arrl.ppo.pool`, as `arrl.pretrain
--workers`); CPU seconds then count this process only, so compare wall seconds.

`--surrogate`: a network with a surrogate; the episodes then also compute every candidate's target (its true
regret) and the update trains the surrogate on them (`arrl.pretrain --surrogate`).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Callable

import numpy as np


def _timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
  fn()  # compiles
  cpu, wall = [], []
  for _ in range(repeats):
    c, w = time.process_time(), time.perf_counter()
    fn()
    cpu.append(time.process_time() - c)
    wall.append(time.perf_counter() - w)
  return {"cpu_s": float(np.median(cpu)), "wall_s": float(np.median(wall)),
          "cpu_s_all": [round(x, 3) for x in cpu]}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--envs", type=int, default=8)
  p.add_argument("--trials", type=int, default=100)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--seed", type=int, default=1)
  p.add_argument("--surrogate", action="store_true")
  p.add_argument("--workers", type=int, default=1)
  args = p.parse_args()

  import jax
  from arrl.pretrain import Config, Pretrainer, ppo_batch
  from arrl.ppo.pool import EpisodePool
  from arrl.ppo.update import update_from_advantages

  with tempfile.TemporaryDirectory() as out:
    pt = Pretrainer(Config(out=out, envs=args.envs, trials=args.trials, seed=args.seed, data=("synthetic",),
                           surrogate=args.surrogate))
  tasks = pt.tasks(np.random.default_rng(args.seed), args.envs)
  pool = EpisodePool(args.workers)

  def episodes():
    rngs = [np.random.default_rng([args.seed, b]) for b in range(args.envs)]
    return pool.run(pt.net_cfg, pt.feat_cfg, pt.params, tasks, args.trials, rngs, targets=args.surrogate)

  res = episodes()
  n = args.envs * (args.trials - 1)  # the batch size of `Pretrainer.iterate`
  batch, adv_n, ret_n, _, targets = ppo_batch(res, pt.cfg.gamma, pt.cfg.gae_lambda, n, np.random.default_rng(args.seed))
  key = np.asarray(jax.random.PRNGKey(args.seed), np.uint32)

  def update():
    params, _, _ = update_from_advantages(pt.net_cfg, pt.ppo_cfg, pt.params, pt.opt_state, batch, adv_n, ret_n,
                                          key, np.float32(pt.cfg.ent_coef), targets)
    return params.block_until_ready()

  upd = _timed(update, args.repeats)
  eps = _timed(episodes, args.repeats)
  pool.close()
  trials = sum(r.episode.executed for r in res)
  print(json.dumps({
      "envs": args.envs, "workers": args.workers, "surrogate": args.surrogate, "trials": trials, "batch": n, "update": upd, "episodes": eps,
      "episode_trials_per_cpu_min": round(60 * trials / eps["cpu_s"]),
      "iteration_trials_per_cpu_min": round(60 * trials / (eps["cpu_s"] + upd["cpu_s"])),
      "iteration_trials_per_wall_min": round(60 * trials / (eps["wall_s"] + upd["wall_s"])),
      "load": os.getloadavg()}, indent=1))


if __name__ == "__main__":
  main()
