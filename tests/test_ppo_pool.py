"""Episodes on several processes (`arrl.ppo.pool`): the same trials as one process, tasks rebuilt from recipes."""
import pickle
import subprocess
import sys

import numpy as np
import pytest

from arrl import pretrain
from arrl.ppo import network, tasks
from arrl.ppo.agent import AgentConfig
from arrl.ppo.features import FeatureConfig
from arrl.ppo.pool import EpisodePool

NET, AGENT = network.NetConfig(), AgentConfig()
FEAT = FeatureConfig(buckets=NET.buckets, history=AGENT.history, max_edits=NET.max_edits)


def test_a_task_is_rebuilt_from_its_recipe():
  rng = np.random.default_rng(11)
  drawn = [tasks.synthetic(rng, f"t{i}") for i in range(3)]
  for t in drawn:
    again = tasks.task_from(pickle.loads(pickle.dumps(t.recipe)))
    assert again.name == t.name and again.space.default() == t.space.default()
    assert (again.optimum, again.scale, again.size) == (t.optimum, t.scale, t.size)
    for tree in [t.space.default()] + [child for _, child in t.space.legal_moves(t.space.default())[:5]]:
      params = t.space.to_params(tree)
      assert again.true(params) == t.true(params)
      try:
        expected = t.objective(params)
      except tasks.Infeasible:
        with pytest.raises(tasks.Infeasible):
          again.objective(params)
        continue
      assert again.objective(params) == expected   # the same observation noise
  assert tasks.task_from(("nas", "cs")).recipe == ("nas", "cs")
  with pytest.raises(ValueError, match="unknown task recipe"):
    tasks.task_from(("tabular", "x"))


def _same_runs(one: list, two: list, batch: list) -> None:
  for a, b, task in zip(one, two, batch):
    assert b.episode.task is task
    assert [o.tree for o in a.episode.history] == [o.tree for o in b.episode.history]
    assert a.rewards == b.rewards and a.episode.regrets == b.episode.regrets and a.episode.executed == b.episode.executed
    np.testing.assert_allclose([float(t.logp) for t in a.transitions], [float(t.logp) for t in b.transitions], atol=1e-6)
    np.testing.assert_allclose([float(t.value) for t in a.transitions], [float(t.value) for t in b.transitions], atol=1e-6)
    for x, y in zip(a.targets, b.targets):   # the surrogate's targets, when asked for
      np.testing.assert_array_equal(x[0], y[0])
      np.testing.assert_array_equal(x[1], y[1])


def test_episodes_split_between_processes_make_the_trials_of_one_process():
  rng = np.random.default_rng(3)
  batch = [tasks.synthetic(rng), tasks.nas_task("cs"), tasks.synthetic(rng)]
  params = network.init_params(NET, 4, AGENT.stop_bias, AGENT.prior)
  rngs = lambda: [np.random.default_rng([4, b]) for b in range(len(batch))]
  one_rngs, two_rngs = rngs(), rngs()
  one = pretrain.run_episodes(NET, FEAT, params, batch, 15, one_rngs)
  sur = network.NetConfig(surrogate=True)   # a surrogate network, hash-shuffled episodes with targets
  sur_params = network.init_params(sur, 5, AGENT.stop_bias, AGENT.prior)
  shuffled = pretrain.run_episodes(sur, FEAT, sur_params, batch, 15, rngs(), hash_shuffle=True, targets=True)
  with EpisodePool(2) as pool:
    _same_runs(one, pool.run(NET, FEAT, params, batch, 15, two_rngs), batch)
    _same_runs(one, pool.run(NET, FEAT, params, batch, 15, rngs()), batch)   # the helper is reused
    _same_runs(shuffled, pool.run(sur, FEAT, sur_params, batch, 15, rngs(), hash_shuffle=True, targets=True), batch)
  assert all(r.targets for r in shuffled) and not any(r.targets for r in one)
  # the caller's generators advanced as in one process
  assert [g.random() for g in one_rngs] == [g.random() for g in two_rngs]


def test_a_task_without_a_recipe_and_a_bad_worker_count_are_clear_errors():
  rng = np.random.default_rng(0)
  task = tasks.synthetic(rng)
  bare = tasks.Task("bare", task.space, task.objective, task.true, task.optimum, task.scale)
  with pytest.raises(ValueError, match="bare have no recipe"):
    EpisodePool(2).run(NET, FEAT, network.init_params(NET, 0, AGENT.stop_bias, AGENT.prior), [task, bare], 12,
                       [np.random.default_rng(0), np.random.default_rng(1)])
  with pytest.raises(ValueError, match="workers must be >= 1"):
    EpisodePool(0)
  with pytest.raises(SystemExit):
    pretrain.parse_args(["--workers", "0"])
  assert pretrain.parse_args(["--workers", "3"])[0].workers == 3


def test_an_episode_crosses_a_process_boundary_without_its_task_and_caches():
  rng = np.random.default_rng(2)
  (r,) = pretrain.run_episodes(NET, FEAT, network.init_params(NET, 1, AGENT.stop_bias, AGENT.prior),
                               [tasks.synthetic(rng)], 12, [np.random.default_rng(1)])
  copy = pickle.loads(pickle.dumps(r))
  assert copy.episode.task is None and not hasattr(copy.episode, "cache")
  assert copy.episode.regrets == r.episode.regrets and [o.tree for o in copy.episode.history] == \
      [o.tree for o in r.episode.history]


def test_a_helper_exits_when_its_parent_is_gone_and_not_before():
  code = "import os, sys, time; from arrl.ppo.pool import _exit_with; _exit_with({}); time.sleep(3); sys.exit(0)"
  orphan = subprocess.Popen([sys.executable, "-c", code.format("-1")])   # -1: never its parent's pid
  child = subprocess.Popen([sys.executable, "-c", code.format("os.getppid()")])
  assert orphan.wait(timeout=60) == 1 and child.wait(timeout=60) == 0
