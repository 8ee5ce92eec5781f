"""The network's surrogate (`NetConfig.surrogate`, `arrl.pretrain --surrogate`): targets from the true regret of
each candidate's program, a loss that only it learns from, and loading and resuming networks with and without it."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arrl import pretrain
from arrl.agents.base import SearchState
from arrl.edits import make_edit
from arrl.ppo import PPOAgent, network, rollout, tasks
from arrl.ppo.agent import AgentConfig
from arrl.ppo.batch import GUIDE, KIND_STOP, Actions
from arrl.ppo.checkpoint import load_pretrained, save_pretrained
from arrl.ppo.features import Candidates, FeatureConfig, HistoryStats, site_tokens, value_tokens
from arrl.ppo.update import PPOConfig, make_optimizer, update_from_advantages
from arrl.space import Space

from test_ppo_network import _tokens

NET = network.NetConfig(surrogate=True)


def _act(rng: np.random.Generator, B: int = 5, S: int = 16, V: int = 8):
  M = NET.max_edits
  sites = _tokens(rng, (B, M, S), rng.integers(3, S, (B, M)))
  values = _tokens(rng, (B, M, V), rng.integers(2, V, (B, M)))
  return Actions(sites=sites, site_idx=np.ones((B, M), np.int32), values=values, value_idx=np.zeros((B, M), np.int32),
                 site_on=rng.random((B, M)) < 0.8, value_on=rng.random((B, M)) < 0.7)


def test_the_surrogate_starts_silent_and_only_its_own_loss_trains_it():
  rng = np.random.default_rng(0)
  act, obs = _act(rng), _tokens(rng, (5, 32), rng.integers(4, 32, 5))
  flat = jnp.asarray(network.init_params(NET, 0, guide=7.0))
  sur = network.surrogate_mask(NET)
  assert 0 < sur.sum() < len(sur) and not network.surrogate_mask(network.NetConfig()).any()
  np.testing.assert_array_equal(network.predict(NET, flat, act.sites), 0.0)   # its output layer starts at 0
  site_t = rng.normal(size=act.sites.kind.shape).astype(np.float32)
  value_t = rng.normal(size=act.values.kind.shape).astype(np.float32)
  moved = flat + jnp.asarray(0.1 * rng.normal(size=flat.shape) * sur, jnp.float32)  # a surrogate that says something

  def policy(p):
    logp, ent, _, value = network.build(NET, p).evaluate(obs, act)
    return logp.sum() + ent.sum() + value.sum()

  def supervised(p, s=site_t, v=value_t):
    return network.build(NET, p).surrogate_loss(act, s, v)[0]

  g_policy, g_sur = np.asarray(jax.jit(jax.grad(policy))(moved)), np.asarray(jax.jit(jax.grad(supervised))(moved))
  assert not g_policy[sur].any() and np.abs(g_policy[~sur]).sum() > 0       # the logits read it through stop_gradient
  assert not g_sur[~sur].any() and np.abs(g_sur[sur]).sum() > 0
  loss0, spread = jax.jit(lambda p: network.build(NET, p).surrogate_loss(act, site_t, value_t))(flat)
  np.testing.assert_allclose(loss0, spread, rtol=1e-6)                      # scoring all alike = the spread
  # the logits move with the surrogate's scores (sur_w != 0), STOP's does not: it changes nothing
  h, _ = network.encode(NET, moved, obs)
  step = jax.tree.map(lambda a: a[:, 1], act.sites)
  score = lambda p: network.site_scores(NET, p, h, jnp.zeros_like(h), 1, step)[0]
  with_sur, without = score(moved), score(moved.at[np.flatnonzero(sur)].set(flat[sur]))
  legal = np.asarray(step.mask)
  shift = np.asarray(with_sur - without)                  # log-probabilities: the logits' change minus a constant
  stop = np.asarray(step.kind == KIND_STOP) & legal
  preds = np.asarray(network.predict(NET, moved, step))
  checked = 0
  for b in range(shift.shape[0]):
    on = legal[b] & ~stop[b]
    if stop[b].any() and on.sum() > 1:
      checked += 1
      logit_shift = shift[b] - shift[b][stop[b]][0]         # STOP's logit unchanged: the others move by sur_w x pred
      np.testing.assert_allclose(logit_shift[on], 7.0 * preds[b][on], rtol=1e-3, atol=1e-5)
  assert checked >= 2


SPEC = {"a": {"choices": [0, 1, 2, 3], "ordinal": True}, "b": {"choices": ["x", "y", "z"]}, "c": {"choices": [0, 1]}}


def _regret(space: Space, tree) -> float:
  p = space.to_params(tree)
  return 0.1 * p["a"] + {"x": 0.5, "y": 0.0, "z": 0.2}[p["b"]] + 0.3 * p["c"]


def test_rollout_targets_are_the_drop_in_true_regret_each_candidate_makes():
  space = Space.from_dict(SPEC)
  feat = FeatureConfig(buckets=NET.buckets, max_edits=NET.max_edits)
  params = network.init_params(NET, 1, stop_bias=-3.0)  # mostly several edits per proposal
  tree = space.default()
  state = SearchState(space=space, current=tree, best_score=1.0, sigma=0.0, history=[], budget_used=0.0)
  oracle = lambda t: _regret(space, t)
  for seed in range(4):
    s = rollout.Search.of(state, HistoryStats.of(state, feat.reward), feat, np.random.default_rng(seed), None, oracle)
    h, v = rollout.encode(NET, params, [s])
    (got,) = rollout.sample(NET, feat, params, [s], h, v, [True])
    site_t, value_t = got.targets
    act, cur = got.transition.act, tree
    assert site_t.shape == act.sites.kind.shape and value_t.shape == act.values.kind.shape
    done: set = set()
    for j, edit in enumerate(got.proposal.edits):   # step j, replayed: the candidates the sampler saw
      legal = dict(space.legal_actions(cur))
      sites = [x for x in legal if x not in done]
      measured = {tree}
      for i, site in enumerate(sites):
        kids = [space.apply(cur, make_edit(site, val)) for val in legal[site]]
        here = _regret(space, cur)
        best = max(here - _regret(space, k) for k in kids if k not in measured)
        assert site_t[j, 1 + i] == pytest.approx(best)
        if i == act.site_idx[j] - 1:
          np.testing.assert_allclose(value_t[j, :len(kids)], [here - _regret(space, k) for k in kids], atol=1e-6)
      assert act.sites.kind[j, 0] == KIND_STOP and site_t[j, 0] == 0.0
      cur = space.apply(cur, edit)
      done.add(edit.site)


def test_targets_change_no_trial_and_updates_on_them_lower_the_surrogate_loss():
  cfg = AgentConfig()
  feat = FeatureConfig(buckets=NET.buckets, history=cfg.history, max_edits=NET.max_edits)
  batch_tasks = [tasks.synthetic(np.random.default_rng([4, i])) for i in range(3)]
  params = network.init_params(NET, 2, cfg.stop_bias, cfg.prior)
  run = lambda t: pretrain.run_episodes(NET, feat, params, batch_tasks, 20, [np.random.default_rng(i) for i in range(3)],
                                        targets=t)
  plain, with_targets = run(False), run(True)
  for a, b in zip(plain, with_targets):
    assert [o.tree for o in a.episode.history] == [o.tree for o in b.episode.history]
    assert not a.targets and len(b.targets) == len(b.transitions)
  batch, adv, ret, _, targets = pretrain.ppo_batch(with_targets, 1.0, 0.95, 56, np.random.default_rng(0))
  assert targets[0].shape == batch.act.sites.kind.shape and targets[1].shape == batch.act.values.kind.shape
  ppo = PPOConfig(split_stop_entropy=True, adv_std_floor=1e-3, lr=3e-3)
  p, opt = jnp.asarray(params), make_optimizer(ppo).init(jnp.asarray(params))
  whole = jax.jit(lambda q: network.build(NET, q).surrogate_loss(batch.act, *targets))  # on the whole batch
  losses = [float(whole(p)[0] / whole(p)[1])]
  for k in range(6):
    p, opt, _ = update_from_advantages(NET, ppo, p, opt, batch, adv, ret, jax.random.PRNGKey(k), np.float32(0.0), targets)
    losses.append(float(whole(p)[0] / whole(p)[1]))
  assert losses[0] == pytest.approx(1.0) and all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.93
  with pytest.raises(ValueError, match="surrogate"):
    update_from_advantages(network.NetConfig(), ppo, jnp.asarray(network.init_params(network.NetConfig(), 0)),
                           make_optimizer(ppo).init(jnp.asarray(network.init_params(network.NetConfig(), 0))),
                           batch, adv, ret, jax.random.PRNGKey(0), np.float32(0.0), targets)


def test_a_surrogate_network_loads_with_its_own_config_and_older_networks_as_without_one(tmp_path):
  params = network.init_params(NET, 3)
  save_pretrained(str(tmp_path / "s"), NET, params, {"command": "test"})
  agent = PPOAgent(seed=0, init_from=str(tmp_path / "s"))        # no network option: the stored config
  assert agent.net_cfg.surrogate and np.array_equal(np.asarray(agent.params), params)
  with pytest.raises(ValueError, match="another config.*surrogate=True here False"):
    PPOAgent(seed=0, init_from=str(tmp_path / "s"), surrogate=False)
  # a network saved before the field existed: its stored config has no "surrogate" and means without one
  plain = network.init_params(network.NetConfig(), 4)
  save_pretrained(str(tmp_path / "old"), network.NetConfig(), plain, {"command": "test"})
  with np.load(tmp_path / "old" / "params.npz") as z:
    old = {k: z[k] for k in z.files}
  cfg = {k: v for k, v in dataclasses.asdict(network.NetConfig()).items() if k != "surrogate"}
  old["net_config"] = np.frombuffer(json.dumps(cfg).encode(), np.uint8)
  np.savez(tmp_path / "old" / "params.npz", **old)
  np.testing.assert_array_equal(load_pretrained(str(tmp_path / "old"), network.NetConfig()), plain)
  assert not PPOAgent(seed=0, init_from=str(tmp_path / "old")).net_cfg.surrogate


def test_a_run_resumes_only_with_the_surrogate_setting_it_started_with():
  base = dataclasses.asdict(pretrain.Config())
  assert pretrain.kept_on_resume(base)["--surrogate"] is False
  assert pretrain.kept_on_resume({**base, "surrogate": True}) != pretrain.kept_on_resume(base)
  old = {k: v for k, v in base.items() if k != "surrogate"}     # a run from before the flag: without one
  assert pretrain.kept_on_resume(old) == pretrain.kept_on_resume(base)


def test_guide_sets_up_a_fresh_surrogate_network_only(tmp_path):
  with pytest.raises(ValueError, match="need --surrogate"):
    pretrain.Config(guide=5.0)
  with pytest.raises(ValueError, match="need --surrogate"):
    pretrain.Config(site_guide_from_values=True)
  with pytest.raises(ValueError, match="not with --init-from"):
    pretrain.Config(surrogate=True, guide=5.0, init_from="shipped")
  base = dataclasses.asdict(pretrain.Config(surrogate=True))
  assert pretrain.kept_on_resume({**base, "guide": 5.0}) != pretrain.kept_on_resume(base)
  assert pretrain.kept_on_resume({**base, "site_guide_from_values": True}) != pretrain.kept_on_resume(base)
  trainer = pretrain.Pretrainer(pretrain.Config(out=str(tmp_path / "run"), surrogate=True, guide=5.0, data=("synthetic",)))
  assert trainer.net_cfg.surrogate
  np.testing.assert_array_equal(np.asarray(trainer.params), network.init_params(NET, 0, AgentConfig().stop_bias,
                                                                                AgentConfig().prior, guide=5.0))


def test_sites_guided_by_their_values_get_the_best_predicted_gain_among_their_legal_values():
  with pytest.raises(ValueError, match="needs a surrogate"):
    network.NetConfig(site_guide_from_values=True)
  net = network.NetConfig(surrogate=True, site_guide_from_values=True)
  space = Space.from_dict(SPEC)
  feat = FeatureConfig(buckets=net.buckets, max_edits=net.max_edits)
  rng = np.random.default_rng(3)
  params = network.init_params(net, 5, guide=6.0)
  params = params + (0.3 * rng.normal(size=params.shape) * network.surrogate_mask(net)).astype(np.float32)
  tree = space.default()
  measured = space.apply(tree, make_edit(("set", "a"), 1))  # one value of "a" measured: illegal there
  state = SearchState(space=space, current=tree, best_score=1.0, sigma=0.0, history=[], budget_used=0.0)
  stats = HistoryStats.of(state, feat.reward, in_flight=[measured])
  s = rollout.Search.of(state, stats, feat, np.random.default_rng(0))
  c = Candidates.of(space, tree, set(), stats)
  sites = site_tokens(space, c, 0, stats, feat)
  rollout.guide_sites(net, feat, params, [s], [c], [sites])
  for i, site in enumerate(c.sites):
    vt = value_tokens(space, c, site, stats, feat)
    pred = np.asarray(network.predict(net, params, jax.tree.map(lambda a: a[None], vt)))[0]
    assert sites.nums[1 + i, GUIDE] == pytest.approx(pred[vt.mask].max(), abs=1e-6)
    assert vt.mask.sum() == len(c.values[site]) - (site == ("set", "a"))
  h, _ = network.encode(net, params, jax.tree.map(lambda a: a[None], s.obs))
  one = jax.tree.map(lambda a: a[None], sites)
  logp = np.asarray(network.site_scores(net, params, h, jnp.zeros_like(h), 0, one)[0])[0]
  plain = network.NetConfig(surrogate=True)            # the same parameters, sites scored by their own surrogate score
  own = np.asarray(network.site_scores(plain, params, h, jnp.zeros_like(h), 0, one)[0])[0]
  pred_sites = np.asarray(network.predict(net, params, one))[0]
  on = np.asarray(sites.mask) & (np.asarray(sites.kind) != KIND_STOP)
  shift = (logp - own)[on] - (logp - own)[on][0]
  np.testing.assert_allclose(shift, 6.0 * ((sites.nums[on, GUIDE] - pred_sites[on]) - (sites.nums[on, GUIDE] - pred_sites[on])[0]),
                             rtol=1e-3, atol=1e-4)
