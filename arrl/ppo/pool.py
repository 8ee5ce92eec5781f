"""Meta-training's episodes on several CPU cores: `EpisodePool(workers).run(...)` is `arrl.pretrain.run_episodes`
with the batch of searches split between this process and `workers - 1` helper processes.

Stepping a search is mostly Python (neighbour enumeration, token building: ~85% of an episode's time, the network
calls the rest), which one process runs on one core. The searches of a batch do not interact, so any split makes
the trials of the single process (`tests/test_ppo_pool.py`). Their log-probabilities and values agree to ~1e-9, not
bit for bit: a batch pads its candidates to its longest row, and XLA's sums over other lengths can round
differently. Adam magnifies such differences in parameters whose gradients are ~0, so runs with different
`workers` drift apart at that level over iterations (one number of workers repeats a run exactly). The split is
round-robin (NAS tables and synthetic tasks cost differently, so neighbours in the batch go to different
processes); this process steps its own share while the helpers step theirs. Rebuilding a synthetic task in a
helper costs ~15 ms.

Tasks cross to a helper as their recipes (`tasks.task_from`: their objectives are closures), the RNGs as their
states (set back on the caller's generators afterwards, so they advance as in one process), the network as a
numpy array; episodes come back without their task, caches and tally (`Episode.__getstate__`), and get the
caller's task object back. Helpers are spawned once (each compiles the network on its first batch), keep the NAS
tables they loaded, and exit with `close()`, with the process, or within a second of its being killed.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import time
from typing import Any, Sequence

import numpy as np

from arrl.agents.base import rng_state, set_rng_state
from arrl.ppo import network
from arrl.ppo.features import FeatureConfig
from arrl.ppo.tasks import Task, rng_from_state, task_from

_TASKS: dict[tuple, Task] = {}   # a helper's NAS tables, built once (a synthetic task is cheap to rebuild)


def _exit_with(parent: int) -> None:
  """A helper's watch on its parent: a killed parent (kill -9 gives it no time to stop the pool) would otherwise
  leave the helper waiting for work forever."""
  def watch() -> None:
    while os.getppid() == parent:
      time.sleep(1.0)
    os._exit(1)
  threading.Thread(target=watch, daemon=True).start()


def _helper(net_cfg: network.NetConfig, feat_cfg: FeatureConfig, params: np.ndarray, recipes: Sequence[tuple],
            trials: int, rng_states: Sequence[dict], hash_shuffle: bool, targets: bool) -> tuple[list, list[dict]]:
  """A helper's share: its episodes (picklable: no task) and its RNGs' final states."""
  import jax
  from arrl.pretrain import run_episodes
  tasks = []
  for r in recipes:
    if r[0] != "nas":
      tasks.append(task_from(r))
      continue
    if r not in _TASKS:
      _TASKS[r] = task_from(r)
    tasks.append(_TASKS[r])
  rngs = [rng_from_state(s) for s in rng_states]
  res = run_episodes(net_cfg, feat_cfg, jax.numpy.asarray(params), tasks, trials, rngs, hash_shuffle, targets)
  return res, [rng_state(g) for g in rngs]


class EpisodePool:
  """`run_episodes` on `workers` processes (this one included); `workers=1` runs everything here."""

  def __init__(self, workers: int):
    if workers < 1:
      raise ValueError(f"workers must be >= 1, got {workers}")
    self.workers = workers
    self._executor: concurrent.futures.ProcessPoolExecutor | None = None

  def run(self, net_cfg: network.NetConfig, feat_cfg: FeatureConfig, params: Any, tasks: Sequence[Task],
          trials: int, rngs: Sequence[np.random.Generator], hash_shuffle: bool = False,
          targets: bool = False) -> list:
    from arrl.pretrain import run_episodes
    parts = min(self.workers, len(tasks))
    if parts == 1:
      return run_episodes(net_cfg, feat_cfg, params, tasks, trials, rngs, hash_shuffle, targets)
    missing = [t.name for t in tasks if t.recipe is None]
    if missing:
      raise ValueError(f"task(s) {', '.join(missing)} have no recipe: they cannot be built in a helper process "
                       "(use workers=1)")
    if self._executor is None:  # spawned, not forked: a fork of a process running JAX's threads can deadlock
      self._executor = concurrent.futures.ProcessPoolExecutor(
          self.workers - 1, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with,
          initargs=(os.getpid(),))
    flat = np.asarray(params)
    shares = [list(range(k, len(tasks), parts)) for k in range(parts)]   # round-robin; shares[0] stays here
    futures = [self._executor.submit(_helper, net_cfg, feat_cfg, flat,
                                     [tasks[i].recipe for i in share], trials,
                                     [rng_state(rngs[i]) for i in share], hash_shuffle, targets)
               for share in shares[1:]]
    out: list = [None] * len(tasks)
    for i, r in zip(shares[0], run_episodes(net_cfg, feat_cfg, params, [tasks[i] for i in shares[0]], trials,
                                            [rngs[i] for i in shares[0]], hash_shuffle, targets)):
      out[i] = r
    for share, future in zip(shares[1:], futures):
      try:
        res, states = future.result()
      except concurrent.futures.process.BrokenProcessPool as e:
        self.close()
        raise RuntimeError(f"an episode helper process died ({e}); rerun, or use workers=1") from None
      for i, r, state in zip(share, res, states):
        r.episode.task = tasks[i]
        set_rng_state(rngs[i], state)
        out[i] = r
    return out

  def close(self) -> None:
    if self._executor is not None:
      self._executor.shutdown(cancel_futures=True)
      self._executor = None

  def __enter__(self) -> "EpisodePool":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
