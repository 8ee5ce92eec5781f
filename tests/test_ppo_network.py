"""The network's outputs and gradient on a fixed input, pinned to the values of the reference implementation
(before the 2-D matrix-product rewrite of `arrl.ppo.network`): a faster formulation must compute the same
function of the same parameters, so checkpoints keep their behaviour."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arrl.ppo import network
from arrl.ppo.batch import HASH_SLOTS, KIND_SITE, KIND_STOP, N_KINDS, NUM_FEATS, Actions, Tokens

# Weighted sums (weights: normal draws of default_rng(1) in the output's shape) computed by the reference
# implementation (git 307036d) from `_outputs()`; "ent_split" (evaluate's entropy with split_stop, which came
# later) by the commit that added it.
PINNED = {"h": -7.583452227054877, "v": -0.007618577522842917, "slogp": -9.207783824918916,
          "skeys": 16.078784464224462, "vlogp": 9.362777608884212, "vkeys": -20.582310458974106,
          "logp": -18.322963446714706, "ent": 6.404498545604785, "ent_split": 8.906676964993185, "value": -0.007618577522842917,
          "grad": -84.65339730853299}


def _tokens(rng: np.random.Generator, shape: tuple[int, ...], n_on: np.ndarray) -> Tokens:
  ids = rng.integers(0, 2048, (*shape, HASH_SLOTS)) * (rng.random((*shape, HASH_SLOTS)) < 0.5)
  return Tokens(ids=ids.astype(np.int32), nums=rng.normal(0, 0.5, (*shape, NUM_FEATS)).astype(np.float32),
                kind=rng.integers(0, N_KINDS, shape).astype(np.int32), mask=np.arange(shape[-1]) < n_on[..., None],
                guide=np.zeros(shape, np.float32))


def _outputs() -> dict[str, np.ndarray]:
  """Every jitted entry point and the gradient of `evaluate` on random tokens, with seed-0 parameters."""
  cfg = network.NetConfig()
  flat = jnp.asarray(network.init_params(cfg, 0))
  rng = np.random.default_rng(0)
  B, T, S, V, M = 6, 64, 16, 16, cfg.max_edits
  obs = _tokens(rng, (B, T), rng.integers(5, T, B))
  sites = _tokens(rng, (B, M, S), rng.integers(2, S, (B, M)))
  values = _tokens(rng, (B, M, V), rng.integers(2, V, (B, M)))
  act = Actions(sites=sites, site_idx=(rng.random((B, M)) * sites.mask.sum(-1)).astype(np.int32), values=values,
                value_idx=(rng.random((B, M)) * values.mask.sum(-1)).astype(np.int32),
                site_on=rng.random((B, M)) < 0.8, value_on=rng.random((B, M)) < 0.7)
  h, v = network.encode(cfg, flat, obs)
  ctx = jnp.asarray(rng.normal(0, 1, h.shape).astype(np.float32))
  step_sites, step_values = (jax.tree.map(lambda a: a[:, 1], t) for t in (sites, values))
  slogp, skeys = network.site_scores(cfg, flat, h, ctx, 1, step_sites)
  vlogp, vkeys = network.value_scores(cfg, flat, h, ctx, 1, skeys[:, 2], step_values)
  logp, ent, _, value = network.evaluate(cfg, flat, obs, act)
  ent_split = jax.jit(lambda p: network.build(cfg, p).evaluate(obs, act, split_stop=True)[1])(flat)

  def objective(p: jax.Array) -> jax.Array:
    lp, e, _, val = network.build(cfg, p).evaluate(obs, act)
    return (lp * jnp.arange(1, B + 1)).sum() + 0.1 * e.sum() + val.sum()

  out = {"h": h, "v": v, "slogp": jnp.where(step_sites.mask, slogp, 0.0), "skeys": skeys,
         "vlogp": jnp.where(step_values.mask, vlogp, 0.0), "vkeys": vkeys, "logp": logp, "ent": ent, "ent_split": ent_split,
         "value": value, "grad": jax.jit(jax.grad(objective))(flat)}
  return {k: np.asarray(x, np.float64) for k, x in out.items()}


def _weighted(x: np.ndarray) -> tuple[float, float]:
  """(weighted sum, sum of |x| |w|): the second scales the tolerance."""
  w = np.random.default_rng(1).normal(size=x.shape)
  return float((x * w).sum()), float((np.abs(x) * np.abs(w)).sum())


def test_outputs_and_gradient_match_the_reference_implementation():
  for name, x in _outputs().items():
    got, scale = _weighted(x)
    assert abs(got - PINNED[name]) <= 1e-6 * scale + 1e-9, (name, got, PINNED[name])


def test_the_site_entropy_bonus_peaks_at_an_even_stop_or_go_on_not_at_more_edits():
  """A categorical over STOP and 40 sites has its highest entropy at P(STOP) = 1/41, so a bonus on it pushes
  proposals toward more edits; the bonus's measure peaks at P(STOP) = 1/2, and is the plain entropy where STOP
  is illegal."""
  S = 41
  kind = np.full((1, S), KIND_SITE, np.int32)
  kind[0, 0] = KIND_STOP
  sites = Tokens(np.zeros((1, S, HASH_SLOTS), np.int32), np.zeros((1, S, NUM_FEATS), np.float32), kind,
                 np.ones((1, S), bool), np.zeros((1, S), np.float32))

  def measure(p_stop: float, tokens: Tokens = sites) -> float:
    logp = np.log(np.r_[p_stop, np.full(S - 1, (1 - p_stop) / (S - 1))])[None].astype(np.float32)
    return float(network.site_entropy(jnp.asarray(logp), tokens)[0])

  grid = np.linspace(0.01, 0.99, 99)
  assert grid[int(np.argmax([measure(p) for p in grid]))] == pytest.approx(0.5)
  assert measure(0.5) == pytest.approx(np.log(2) + np.log(S - 1), rel=1e-5)
  first_step = sites._replace(mask=np.arange(S)[None] > 0)   # STOP illegal
  logp = np.log(np.r_[1e-30, np.full(S - 1, 1 / (S - 1))])[None].astype(np.float32)
  assert float(network.site_entropy(jnp.asarray(logp), first_step)[0]) == pytest.approx(np.log(S - 1), rel=1e-5)
