"""PPO maths against hand-computed values, the reward, and the jitted update's effect."""
import math

import jax
import numpy as np
import pytest

from arrl.agents.base import Outcome
from arrl.ppo import network
from arrl.ppo.batch import HASH_SLOTS, NUM_FEATS, Actions, Tokens, Transition
from arrl.ppo.reward import RewardConfig, reward
from arrl.ppo.update import PPOConfig, gae, make_optimizer, ppo_loss, ppo_update


def test_gae_matches_hand_computation():
  # deltas: 1 + .9*1 - .5 = 1.4; 0 + .9*0 - 1 = -1; 2 + .9*1.5 - 0 = 3.35; A_t = delta_t + .72 * A_{t+1}
  adv, ret = gae(np.array([1.0, 0.0, 2.0]), np.array([0.5, 1.0, 0.0]), np.float32(1.5), 0.9, 0.8)
  np.testing.assert_allclose(adv, [1.4 + 0.72 * (-1 + 0.72 * 3.35), -1 + 0.72 * 3.35, 3.35], rtol=1e-6)
  np.testing.assert_allclose(ret, np.asarray(adv) + [0.5, 1.0, 0.0], rtol=1e-6)


def test_gae_lambda_zero_is_one_step_td():
  adv, _ = gae(np.array([1.0, 2.0]), np.array([0.0, 0.5]), np.float32(1.0), 0.5, 0.0)
  np.testing.assert_allclose(adv, [1 + 0.5 * 0.5 - 0, 2 + 0.5 * 1.0 - 0.5])


def test_ppo_loss_matches_hand_computation():
  cfg = PPOConfig(clip_eps=0.2, value_clip=1.0, vf_coef=0.5)
  old = np.array([-1.0, -2.0])
  logp = old + np.log([1.5, 0.5])  # ratios 1.5 and 0.5
  loss, m = ppo_loss(logp, np.array([0.5, 1.5]), np.array([2.0, 0.0]), old, np.array([0.0, 0.0]),
                     np.array([1.0, -1.0]), np.array([1.0, 1.0]), cfg, np.float32(0.1))
  # surrogate: min(1.5, 1.2) = 1.2 and min(-0.5, -0.8) = -0.8 -> policy loss -0.2
  # value: max((2-1)^2, (1-1)^2) = 1 and max(1, 1) = 1 -> 0.5 * 1 = 0.5; entropy 1.0
  assert float(m["policy_loss"]) == pytest.approx(-0.2, abs=1e-6)
  assert float(m["value_loss"]) == pytest.approx(0.5, abs=1e-6)
  assert float(m["entropy"]) == pytest.approx(1.0)
  assert float(loss) == pytest.approx(-0.2 + 0.5 * 0.5 - 0.1 * 1.0, abs=1e-6)
  assert float(m["clip_frac"]) == 1.0


def _outcome(status="discard", score=1.1, best=1.0, sigma=0.01, info=None):
  return Outcome(trial_id="0", tree=None, parent=None, edits=(), status=status, score=score, kept=False,
                 best_before=best, sigma=sigma, info=info or {})


def test_reward_symlog_keeps_the_order_of_large_losses_then_clips():
  cfg = RewardConfig()
  assert reward(_outcome(score=0.98), cfg) == pytest.approx(math.log(3.0))     # gain 2 units -> log(1 + 2)
  assert reward(_outcome(score=1.02), cfg) == pytest.approx(-math.log(3.0))
  assert reward(_outcome(score=1.5), cfg) == pytest.approx(-math.log(51.0))    # 50 units worse: not clipped
  assert reward(_outcome(score=1.5), cfg) > reward(_outcome(score=1.9), cfg)   # ... and still ordered
  assert reward(_outcome(score=3.0), cfg) == -cfg.reward_clip                  # 200 units: log(201) > 5
  assert reward(_outcome(score=-1.0), cfg) == cfg.reward_clip
  with pytest.raises(ValueError, match="squash"):
    RewardConfig(squash="tanh")


def test_reward_noise_units_clip_failures_and_aborts():
  cfg = RewardConfig(squash="clip")
  assert reward(_outcome(score=0.98), cfg) == pytest.approx(2.0)       # 0.02 better at sigma 0.01
  assert reward(_outcome(score=1.5), cfg) == -cfg.reward_clip          # clipped
  assert reward(_outcome(score=0.0), cfg) == cfg.reward_clip
  for status in ("crash", "diverged", "timeout", "compile-timeout"):
    assert reward(_outcome(status=status, score=None), cfg) == cfg.fail_penalty
  assert reward(_outcome(status="aborted", score=1.01), cfg) == pytest.approx(-1.0)  # predicted score
  assert reward(_outcome(status="aborted", score=None, info={"predicted_score": 0.99}), cfg) == pytest.approx(1.0)
  assert reward(_outcome(status="aborted", score=None), cfg) == cfg.fail_penalty
  assert reward(_outcome(score=0.98), RewardConfig(squash="clip", step_cost=0.5)) == pytest.approx(1.5)


def test_reward_sigma_floor_keeps_deterministic_objectives_finite():
  r = reward(_outcome(score=9.99, best=10.0, sigma=0.0))  # floor = 1e-3 * 10 = 0.01: one unit
  assert math.isfinite(r) and r == pytest.approx(math.log(2.0))


def test_bad_configs_raise_clear_errors():
  with pytest.raises(ValueError, match="clip_eps"):
    PPOConfig(clip_eps=1.5)
  with pytest.raises(ValueError, match="surrogate_coef"):
    PPOConfig(surrogate_coef=-1.0)
  with pytest.raises(ValueError, match="reward_clip"):
    RewardConfig(reward_clip=0)
  with pytest.raises(ValueError, match="multiple of n_heads"):
    network.NetConfig(d_model=30, n_heads=4)


def _tokens(rng, shape, kind):
  return Tokens(rng.integers(1, 64, (*shape, HASH_SLOTS)).astype(np.int32),
                rng.normal(size=(*shape, NUM_FEATS)).astype(np.float32), np.full(shape, kind, np.int32),
                np.ones(shape, bool), np.zeros(shape, np.float32))


def test_update_raises_logp_of_rewarded_action_and_is_deterministic():
  cfg, pcfg = network.NetConfig(), PPOConfig()  # the agent's defaults and shapes: compiled once per session
  rng = np.random.default_rng(0)
  N, M = 8, cfg.max_edits
  params = network.init_params(cfg, 0)
  obs = _tokens(rng, (N, 64), 1)
  act = Actions(sites=_tokens(rng, (N, M, 8), 3), site_idx=rng.integers(1, 8, (N, M)).astype(np.int32),
                values=_tokens(rng, (N, M, 8), 4), value_idx=rng.integers(0, 8, (N, M)).astype(np.int32),
                site_on=np.ones((N, M), bool), value_on=np.ones((N, M), bool))
  logp, _, n, value = network.evaluate(cfg, params, obs, act)
  assert (np.asarray(n) == 2 * M).all()
  rewards = np.where(np.arange(N) % 2 == 0, 5.0, -5.0).astype(np.float32)
  batch = Transition(obs=obs, act=act, logp=np.asarray(logp), value=np.asarray(value), reward=rewards)
  next_obs = jax.tree.map(lambda a: a[:1], obs)
  opt = make_optimizer(pcfg).init(params)
  key = np.asarray(jax.random.PRNGKey(3))
  new, _, metrics = ppo_update(cfg, pcfg, params, opt, batch, next_obs, key, np.float32(0.0))
  again, _, _ = ppo_update(cfg, pcfg, params, opt, batch, next_obs, key, np.float32(0.0))
  np.testing.assert_array_equal(np.asarray(new), np.asarray(again))
  assert all(np.isfinite(float(v)) for v in metrics.values())
  new_logp, _, _, _ = network.evaluate(cfg, new, obs, act)
  delta = np.asarray(new_logp) - np.asarray(logp)
  assert delta[rewards > 0].mean() > delta[rewards < 0].mean() + 0.05
