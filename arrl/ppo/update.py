"""GAE, the PPO loss and the whole update as one jitted function (purejaxrl style).

The search is one never-ending episode (a trial never ends it), so GAE has no done flags and bootstraps
from the critic's value of the state after the last trial of the batch.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from arrl.ppo.batch import Tokens, Transition
from arrl.ppo.network import NetConfig, build, surrogate_mask


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  clip_eps: float = 0.2        # policy ratio clip
  value_clip: float = 0.2      # value-change clip, in units of reward_scale * reward
  vf_coef: float = 0.5
  gamma: float = 0.5           # an edit's effect is mostly immediate; a kept gain also raises the next bar
  gae_lambda: float = 0.9
  reward_scale: float = 0.2    # rewards (noise units, clipped to +-5) enter the update as +-1
  adv_std_floor: float = 0.5   # advantages are divided by max(std, floor): in a batch of equal rewards (every
                               # trial failing near an optimum) the critic's small errors must not become
                               # unit-size noise
  epochs: int = 4
  minibatches: int = 2
  lr: float = 3e-4             # Adam moves every weight ~lr per step: 1e-3 overshoots the clip at once
  max_grad_norm: float = 0.5
  split_stop_entropy: bool = False  # entropy bonus of a site choice: network.site_entropy (stop-or-go-on + which
                               # site; meta-training) instead of the categorical's, which favours more edits
  surrogate_coef: float = 1.0  # weight of the surrogate's supervised loss (meta-training with targets only)

  def __post_init__(self) -> None:
    if not 0 < self.clip_eps < 1:
      raise ValueError(f"clip_eps must be in (0, 1), got {self.clip_eps}")
    if not (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
      raise ValueError(f"gamma and gae_lambda must be in [0, 1], got {self.gamma}, {self.gae_lambda}")
    if min(self.epochs, self.minibatches) < 1 or min(self.lr, self.max_grad_norm, self.value_clip,
                                                      self.reward_scale, self.adv_std_floor) <= 0:
      raise ValueError(f"epochs, minibatches >= 1 and lr, max_grad_norm, value_clip, reward_scale, adv_std_floor "
                       f"> 0 required, got {self}")
    if not self.surrogate_coef >= 0:
      raise ValueError(f"surrogate_coef must be >= 0, got {self.surrogate_coef}")


def make_optimizer(cfg: PPOConfig) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr))


def _clipped(g: jax.Array, max_norm: float) -> jax.Array:
  return g * jnp.minimum(1.0, max_norm / jnp.maximum(jnp.linalg.norm(g), 1e-12))


def gae(rewards_N: jax.Array, values_N: jax.Array, last_value: jax.Array, gamma: float,
        lam: float) -> tuple[jax.Array, jax.Array]:
  """Generalised advantage estimates and returns (advantage + value) for one continuing trajectory."""
  next_values_N = jnp.append(values_N[1:], last_value)
  deltas_N = rewards_N + gamma * next_values_N - values_N

  def back(carry, delta):
    adv = delta + gamma * lam * carry
    return adv, adv

  _, adv_N = jax.lax.scan(back, jnp.zeros((), deltas_N.dtype), deltas_N, reverse=True)
  return adv_N, adv_N + values_N


def ppo_loss(logp_B, entropy_B, value_B, old_logp_B, old_value_B, adv_B, ret_B, cfg: PPOConfig,
             ent_coef: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Clipped surrogate + clipped value loss - entropy bonus, means over the batch."""
  ratio_B = jnp.exp(logp_B - old_logp_B)
  surrogate_B = jnp.minimum(ratio_B * adv_B, jnp.clip(ratio_B, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv_B)
  policy_loss = -surrogate_B.mean()
  clipped_B = old_value_B + jnp.clip(value_B - old_value_B, -cfg.value_clip, cfg.value_clip)
  value_loss = 0.5 * jnp.maximum((value_B - ret_B) ** 2, (clipped_B - ret_B) ** 2).mean()
  entropy = entropy_B.mean()
  loss = policy_loss + cfg.vf_coef * value_loss - ent_coef * entropy
  return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                "approx_kl": ((ratio_B - 1) - jnp.log(ratio_B)).mean(),
                "clip_frac": (jnp.abs(ratio_B - 1) > cfg.clip_eps).mean()}


@functools.partial(jax.jit, static_argnums=(0, 1))
def ppo_update(net: NetConfig, cfg: PPOConfig, params: jax.Array, opt_state: optax.OptState, batch: Transition,
               next_obs: Tokens, key: jax.Array, ent_coef: jax.Array) -> tuple[jax.Array, optax.OptState, dict]:
  """`epochs` passes over `minibatches` shuffled minibatches of one batch of N consecutive transitions.

  `next_obs` [1, T] is the state after the batch's last trial (the GAE bootstrap).
  """
  _, last_value = build(net, params).encode(next_obs)
  adv_N, ret_N = gae(cfg.reward_scale * batch.reward, batch.value, last_value[0], cfg.gamma, cfg.gae_lambda)
  return _optimise(net, cfg, params, opt_state, batch, adv_N, ret_N, key, ent_coef)


@functools.partial(jax.jit, static_argnums=(0, 1))
def update_from_advantages(net: NetConfig, cfg: PPOConfig, params: jax.Array, opt_state: optax.OptState,
                           batch: Transition, adv_N: jax.Array, ret_N: jax.Array, key: jax.Array,
                           ent_coef: jax.Array, targets: tuple[jax.Array, jax.Array] | None = None
                           ) -> tuple[jax.Array, optax.OptState, dict]:
  """The same update for transitions of many episodes whose advantages and returns were computed per episode
  (meta-training: `arrl.pretrain`); with `targets` ([N, M, S], [N, M, V]: see `PolicyValueNet.surrogate_loss`)
  the network's surrogate learns from them in the same steps."""
  return _optimise(net, cfg, params, opt_state, batch, adv_N, ret_N, key, ent_coef, targets)


def _optimise(net: NetConfig, cfg: PPOConfig, params: jax.Array, opt_state: optax.OptState, batch: Transition,
              adv_N: jax.Array, ret_N: jax.Array, key: jax.Array, ent_coef: jax.Array,
              targets: tuple[jax.Array, jax.Array] | None = None):
  tx = make_optimizer(cfg)
  adv_N = (adv_N - adv_N.mean()) / jnp.maximum(adv_N.std(), cfg.adv_std_floor)  # whole batch: minibatches are tiny
  n = batch.reward.shape[0]
  size = n // cfg.minibatches
  if targets is not None:
    if not net.surrogate:
      raise ValueError("surrogate targets need a network with a surrogate (NetConfig.surrogate)")
    sur = jnp.asarray(surrogate_mask(net))

  def loss_fn(p, mb: Transition, adv, ret, tgt):
    model = build(net, p)
    logp, ent, _, value = model.evaluate(mb.obs, mb.act, cfg.split_stop_entropy)
    loss, metrics = ppo_loss(logp, ent, value, mb.logp, mb.value, adv, ret, cfg, ent_coef)
    if tgt is None:
      return loss, metrics
    metrics["surrogate_loss"], metrics["surrogate_spread"] = model.surrogate_loss(mb.act, *tgt)
    return loss + cfg.surrogate_coef * metrics["surrogate_loss"], metrics

  def minibatch(carry, idx):
    p, o = carry
    mb = jax.tree.map(lambda a: a[idx], batch)
    tgt = None if targets is None else jax.tree.map(lambda a: a[idx], targets)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, mb, adv_N[idx], ret_N[idx], tgt)
    if targets is not None:
      # The policy's and the surrogate's gradients touch disjoint parameters (the logits read the surrogate
      # through a stop_gradient); each is clipped on its own, so one part's large gradient cannot shrink the other's.
      grads = jnp.where(sur, _clipped(grads * sur, cfg.max_grad_norm), _clipped(grads * ~sur, cfg.max_grad_norm))
    updates, o = tx.update(grads, o, p)
    return (optax.apply_updates(p, updates), o), metrics

  def epoch(carry, k):
    perm = jax.random.permutation(k, n)[: size * cfg.minibatches].reshape(cfg.minibatches, size)
    return jax.lax.scan(minibatch, carry, perm)

  (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, cfg.epochs))
  return params, opt_state, jax.tree.map(lambda m: m[-1].mean(), metrics)
