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


def test_episodes_split_between_processes_make_the_trials_of_one_process():
  rng = np.random.default_rng(3)
  batch = [tasks.synthetic(rng), tasks.nas_task("cs"), tasks.synthetic(rng)]
  params = network.init_params(NET, 4, AGENT.stop_bias, AGENT.prior)
  rngs = lambda: [np.random.default_rng([4, b]) for b in range(len(batch))]
  one_rngs, two_rngs = rngs(), rngs()
  one = pretrain.run_episodes(NET, FEAT, params, batch, 15, one_rngs)
  with EpisodePool(2) as pool:
    two = pool.run(NET, FEAT, params, batch, 15, two_rngs)
    again = pool.run(NET, FEAT, params, batch, 15, rngs())   # the helper is reused
  for a, b, c, task in zip(one, two, again, batch):
    assert b.episode.task is task and c.episode.task is task
    assert [o.tree for o in a.episode.history] == [o.tree for o in b.episode.history] == [o.tree for o in c.episode.history]
    assert a.rewards == b.rewards and a.episode.regrets == b.episode.regrets and a.episode.executed == b.episode.executed
    np.testing.assert_allclose([float(t.logp) for t in a.transitions], [float(t.logp) for t in b.transitions], atol=1e-6)
    np.testing.assert_allclose([float(t.value) for t in a.transitions], [float(t.value) for t in b.transitions], atol=1e-6)
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
