"""Policy and value network (Flax NNX): a small transformer encoder over the program and the recent trials,
and autoregressive pointer heads that score candidate sites and values from their own embeddings.

Choices are scored as dot products between a query (from the encoder state and the edits chosen so far)
and a key per candidate (from the candidate's hashed tokens), never by fixed-size output heads: a variant
or field registered in the grammar later is choosable with no change here.

The parameters live in one flat vector; the jitted entry points (`encode`, `site_scores`, `value_scores`,
`evaluate`) take `(cfg, flat)`, so every agent with the same architecture shares their compiled code.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from arrl.ppo import neighbours
from arrl.ppo.batch import GUIDE, KIND_SITE, KIND_STOP, KIND_VALUE, N_KINDS, NUM_FEATS, REGRET, Actions, Tokens


@dataclasses.dataclass(frozen=True)
class NetConfig:
  d_model: int = 64
  n_layers: int = 2
  n_heads: int = 4
  mlp_mult: int = 2
  buckets: int = 2048        # rows of the hashed-string embedding table
  max_edits: int = 3         # M: edits per proposal at most
  surrogate: bool = False    # a supervised scorer of candidates from their numbers alone (`PolicyValueNet.predict`)
  site_guide_from_values: bool = False  # with a surrogate: a site's guide score is the best of its values' (which the
                             # sampler writes into the site token, batch.GUIDE), not the surrogate's score of the site
  neighbour_guide: bool = False  # a neighbour scorer (arrl.ppo.neighbours, fitted apart: `python -m arrl.fit_scorer`)
                             # whose predicted improvement, written by the sampler into Tokens.guide, enters the logits

  def __post_init__(self) -> None:
    if self.d_model % self.n_heads:
      raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
    if min(self.d_model, self.n_layers, self.n_heads, self.mlp_mult, self.max_edits) < 1:
      raise ValueError(f"network sizes must be >= 1, got {self}")
    if self.buckets < 16:
      raise ValueError(f"buckets must be >= 16, got {self.buckets}")
    if self.site_guide_from_values and not self.surrogate:
      raise ValueError("site_guide_from_values needs a surrogate (surrogate=True)")


def dense(layer: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """`layer` applied to the last axis of `x` as 2-D matrix products: XLA CPU runs a dot of a 3-D or 4-D
  activation with a weight slower than the same dot flattened (an encoder block, forward and backward on
  198 x 64 tokens: 169 -> 147 ms CPU)."""
  y = layer(x.reshape(-1, x.shape[-1]))
  return y.reshape(*x.shape[:-1], y.shape[-1])


def _kind_nums(t: Tokens) -> jax.Array:
  """[..., N_KINDS * NUM_FEATS]: each token's numbers in its kind's slot, zeros elsewhere. A weight per kind
  [N_KINDS, NUM_FEATS, ...] then applies as one matrix product: gathering it per token (`w[kind]`) costs
  several times more on XLA CPU, mostly in the gradient's scatter-add."""
  onehot = jax.nn.one_hot(t.kind, N_KINDS, dtype=t.nums.dtype)
  return (onehot[..., :, None] * t.nums[..., None, :]).reshape(*t.kind.shape, N_KINDS * NUM_FEATS)


def masked_log_softmax(logits: jax.Array, mask: jax.Array) -> jax.Array:
  """log-softmax over the legal entries; illegal ones get the dtype's minimum (finite, unlike -inf, so an
  all-illegal row stays NaN-free and is simply ignored by the step masks)."""
  logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  return jax.nn.log_softmax(logits, axis=-1)


def masked_entropy(logp: jax.Array, mask: jax.Array) -> jax.Array:
  return -jnp.sum(jnp.where(mask, jnp.exp(logp) * logp, 0.0), axis=-1)


def site_entropy(logp_BxS: jax.Array, sites: Tokens) -> jax.Array:
  """[B] a site choice's entropy as two decisions: stop or go on (a binary entropy) and which site if going on
  (the entropy of the sites renormalised without STOP). The plain entropy of the categorical over STOP and S
  sites peaks at P(STOP) = 1/(S + 1), so a bonus on it pushes every proposal toward more edits (meta-training
  with hash shuffling: 1.3 -> 2.3 edits and 3.7 -> 5.8 nats per proposal over 130 iterations); this one peaks at
  P(STOP) = 1/2 and is the plain entropy where STOP is illegal (the first step). Used by the entropy bonus of
  meta-training (`PPOConfig.split_stop_entropy`)."""
  is_stop = sites.kind == KIND_STOP
  p_stop = jnp.clip(jnp.sum(jnp.where(is_stop & sites.mask, jnp.exp(logp_BxS), 0.0), axis=-1), 1e-6, 1 - 1e-6)
  stop_B = -(p_stop * jnp.log(p_stop) + (1 - p_stop) * jnp.log1p(-p_stop))
  go_on = sites.mask & ~is_stop
  stop_legal_B = jnp.any(is_stop & sites.mask, axis=-1)
  return jnp.where(stop_legal_B, stop_B, 0.0) + masked_entropy(masked_log_softmax(logp_BxS, go_on), go_on)


class MLP(nnx.Module):
  def __init__(self, d_in: int, d_hidden: int, d_out: int, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(d_in, d_hidden, rngs=rngs)
    self.fc2 = nnx.Linear(d_hidden, d_out, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return dense(lambda y: self.fc2(jax.nn.gelu(self.fc1(y))), x)


class Block(nnx.Module):
  """Pre-norm transformer encoder block with a key-padding mask."""

  def __init__(self, cfg: NetConfig, rngs: nnx.Rngs):
    d = cfg.d_model
    self.n_heads = cfg.n_heads
    self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
    self.qkv = nnx.Linear(d, 3 * d, rngs=rngs)
    self.proj = nnx.Linear(d, d, rngs=rngs)
    self.mlp = MLP(d, cfg.mlp_mult * d, d, rngs)

  def __call__(self, x_BxTxD: jax.Array, mask_BxT: jax.Array, n_out: int | None = None) -> jax.Array:
    """[B, n_out or T, D]: only the first `n_out` positions' outputs are computed (each position's output
    depends on the others only through its attention's keys and values)."""
    B, T, D = x_BxTxD.shape
    H = self.n_heads
    qkv = dense(self.qkv, self.ln1(x_BxTxD)).reshape(B, T, 3, H, D // H)
    q_BxQxHxK, k_BxTxHxK, v_BxTxHxK = qkv[:, :n_out, 0], qkv[:, :, 1], qkv[:, :, 2]
    att_BxHxQxT = jnp.einsum("bqhk,bshk->bhqs", q_BxQxHxK, k_BxTxHxK) / math.sqrt(D // H)
    att_BxHxQxT = jnp.where(mask_BxT[:, None, None, :], att_BxHxQxT, jnp.finfo(att_BxHxQxT.dtype).min)
    out_BxQxHxK = jnp.einsum("bhqs,bshk->bqhk", jax.nn.softmax(att_BxHxQxT, axis=-1), v_BxTxHxK)
    x_BxQxD = x_BxTxD[:, :n_out] + dense(self.proj, out_BxQxHxK.reshape(B, -1, D))
    return x_BxQxD + self.mlp(self.ln2(x_BxQxD))


class PolicyValueNet(nnx.Module):
  """Build it with `init_params` (the weights are drawn there, in numpy)."""

  def __init__(self, cfg: NetConfig, rngs: nnx.Rngs):
    d, M = cfg.d_model, cfg.max_edits
    self.cfg = cfg
    self.table = nnx.Embed(cfg.buckets, d, rngs=rngs)
    self.kind_emb = nnx.Embed(N_KINDS, d, rngs=rngs)
    self.num_w = nnx.Param(jnp.zeros((N_KINDS, NUM_FEATS, d)))
    self.ln_in = nnx.LayerNorm(d, rngs=rngs)
    self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
    self.ln_out = nnx.LayerNorm(d, rngs=rngs)
    self.critic = MLP(d, 2 * d, 1, rngs)
    self.site_key = MLP(d, 2 * d, d, rngs)
    self.value_key = MLP(d, 2 * d, d, rngs)
    self.site_query = MLP(2 * d + M, 2 * d, d, rngs)
    self.value_query = MLP(3 * d + M, 2 * d, d, rngs)
    self.stop_bias = nnx.Param(jnp.zeros(()))
    # A linear term on each candidate's numbers, added to its logit. It starts as a prior — a setting whose
    # best program was worse than the current best is tried less (batch.REGRET) — and is learned from there:
    # a clipped policy update moves each logit by a few tenths at most, too slowly to learn that from scratch
    # within a short run.
    self.prior_w = nnx.Param(jnp.zeros((N_KINDS, NUM_FEATS)))
    if cfg.surrogate:
      # Trained by a supervised loss only (`surrogate_loss`: meta-training knows every candidate's true result);
      # the policy adds sur_w times its prediction to each logit and learns sur_w, not the surrogate. It
      # reads a candidate's numbers, never its strings, so what it learns holds in any space.
      self.surrogate = MLP(N_KINDS * NUM_FEATS, 2 * d, 1, rngs)
      self.sur_w = nnx.Param(jnp.zeros(()))
    if cfg.neighbour_guide:
      # Fitted apart and never trained here: the sampler runs it (in numpy, `scorer_weights`) on numbers the
      # network does not read; the policy learns how far to follow it (nb_w).
      h = neighbours.HIDDEN
      self.scorer = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in ((neighbours.N_FEATS, h), (h, h), (h, 1))])
      self.nb_w = nnx.Param(jnp.zeros(()))

  def embed(self, t: Tokens) -> jax.Array:
    """[..., d]: sum of the hashed-string embeddings, the kind's projection of the numbers, the kind."""
    e = jnp.sum(self.table(t.ids) * (t.ids > 0)[..., None], axis=-2)
    e = e + dense(lambda x: x @ self.num_w[...].reshape(x.shape[-1], -1), _kind_nums(t))
    return self.ln_in(e + self.kind_emb(t.kind))

  def encode(self, obs: Tokens) -> tuple[jax.Array, jax.Array]:
    """Encoder state [B, d] (read at the global token, position 0) and the critic's value [B]."""
    x_BxTxD = self.embed(obs)
    for i, block in enumerate(self.blocks):  # the last block computes the global token alone: it is all we read
      x_BxTxD = block(x_BxTxD, obs.mask, 1 if i == len(self.blocks) - 1 else None)
    h_BxD = self.ln_out(x_BxTxD[:, 0])
    # The critic reads the encoder but does not train it: with a handful of samples per update its
    # regression gradient would swamp the policy's.
    return h_BxD, self.critic(jax.lax.stop_gradient(h_BxD))[:, 0]

  def _step_code(self, step: jax.Array | int, batch: int) -> jax.Array:
    return jnp.broadcast_to(jax.nn.one_hot(step, self.cfg.max_edits), (batch, self.cfg.max_edits))

  def _prior(self, t: Tokens) -> jax.Array:
    return _kind_nums(t) @ self.prior_w[...].reshape(-1)

  def predict(self, t: Tokens) -> jax.Array:
    """[...] the surrogate's score of each candidate: the drop in normalised regret from the program edited so far
    to the one the candidate makes (a site: the best of its values; STOP: 0, nothing changes)."""
    return self.surrogate(_kind_nums(t))[..., 0]

  def _guided(self, t: Tokens) -> jax.Array:
    """sur_w x the surrogate's score of each candidate, 0 for STOP (and without a surrogate): going on to a site
    wins over STOP as far as its best value is predicted to lower the regret; plus nb_w x the neighbour scorer's
    (Tokens.guide) with NetConfig.neighbour_guide."""
    out = jnp.zeros(t.kind.shape)
    if self.cfg.neighbour_guide:
      out = out + self.nb_w[...] * t.guide
    if not self.cfg.surrogate:
      return out
    score = jax.lax.stop_gradient(self.predict(t))
    if self.cfg.site_guide_from_values:
      score = jnp.where(t.kind == KIND_SITE, t.nums[..., GUIDE], score)
    return out + jnp.where(t.kind == KIND_STOP, 0.0, self.sur_w[...] * score)

  def surrogate_loss(self, act: Actions, site_target: jax.Array, value_target: jax.Array) -> tuple[jax.Array,
                                                                                                      jax.Array]:
    """Mean squared error of the surrogate's scores against the targets [B, M, S] and [B, M, V] (see `predict`)
    over the legal candidates of the choices taken, and the mean squared target (the error of scoring every
    candidate 0: 1 - the ratio is the variance explained)."""
    mask_s = act.sites.mask & (act.sites.kind != KIND_STOP) & act.site_on[..., None]
    mask_v = act.values.mask & act.value_on[..., None]
    n = jnp.maximum(mask_s.sum() + mask_v.sum(), 1)

    def mse(pred_s: jax.Array, pred_v: jax.Array) -> jax.Array:
      return (jnp.sum(jnp.where(mask_s, (pred_s - site_target) ** 2, 0.0))
              + jnp.sum(jnp.where(mask_v, (pred_v - value_target) ** 2, 0.0))) / n

    return mse(self.predict(act.sites), self.predict(act.values)), mse(jnp.zeros(mask_s.shape), jnp.zeros(mask_v.shape))

  def site_scores(self, h_BxD, ctx_BxD, step, sites: Tokens,
                  keys_BxSxD: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """log-probabilities [B, S] over candidate sites (STOP among them) and their keys [B, S, d] (computed
    here unless given)."""
    keys_BxSxD = self.site_key(self.embed(sites)) if keys_BxSxD is None else keys_BxSxD
    q_BxD = self.site_query(jnp.concatenate([h_BxD, ctx_BxD, self._step_code(step, h_BxD.shape[0])], -1))
    logits_BxS = (jnp.einsum("bsd,bd->bs", keys_BxSxD, q_BxD) / math.sqrt(h_BxD.shape[-1]) + self._prior(sites)
                  + self._guided(sites))
    # STOP's logit carries log(number of legal sites), so its initial probability (sigmoid of its bias, next
    # to sites of logit ~0) is the same in a 7-field space and in a 45-site one.
    n_sites_B = jnp.sum(sites.mask & (sites.kind != KIND_STOP), axis=-1)
    stop_B = self.stop_bias[...] + jnp.log(jnp.maximum(n_sites_B, 1).astype(logits_BxS.dtype))
    logits_BxS = logits_BxS + jnp.where(sites.kind == KIND_STOP, stop_B[:, None], 0.0)
    return masked_log_softmax(logits_BxS, sites.mask), keys_BxSxD

  def value_scores(self, h_BxD, ctx_BxD, step, site_key_BxD, values: Tokens,
                   keys_BxVxD: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """log-probabilities [B, V] over the chosen site's candidate values and their keys [B, V, d] (computed
    here unless given)."""
    keys_BxVxD = self.value_key(self.embed(values)) if keys_BxVxD is None else keys_BxVxD
    code = self._step_code(step, h_BxD.shape[0])
    q_BxD = self.value_query(jnp.concatenate([h_BxD, ctx_BxD, site_key_BxD, code], -1))
    logits_BxV = (jnp.einsum("bvd,bd->bv", keys_BxVxD, q_BxD) / math.sqrt(h_BxD.shape[-1]) + self._prior(values)
                  + self._guided(values))
    return masked_log_softmax(logits_BxV, values.mask), keys_BxVxD

  def evaluate(self, obs: Tokens, act: Actions,
               split_stop: bool = False) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """For a batch of stored composite actions: log-probability [B] (the sum over its choices), entropy [B]
    (the sum of the per-choice conditional entropies along the taken path: an unbiased estimate of the joint
    entropy; with `split_stop` a site choice's is `site_entropy`), number of choices [B] and value [B].
    Sampling builds the same sums one step at a time."""
    h_BxD, value_B = self.encode(obs)
    rows = jnp.arange(h_BxD.shape[0])

    def step(ctx_BxD, xs):  # one (site, value) choice for the whole batch; a scan compiles it once
      j, sites, values, sidx_B, vidx_B, s_on, v_on, skeys_BxSxD, vkeys_BxVxD = xs
      slogp_BxS, _ = self.site_scores(h_BxD, ctx_BxD, j, sites, skeys_BxSxD)
      skey_BxD = skeys_BxSxD[rows, sidx_B]
      vlogp_BxV, _ = self.value_scores(h_BxD, ctx_BxD, j, skey_BxD, values, vkeys_BxVxD)
      logp_B = jnp.where(s_on, slogp_BxS[rows, sidx_B], 0.0) + jnp.where(v_on, vlogp_BxV[rows, vidx_B], 0.0)
      site_ent_B = site_entropy(slogp_BxS, sites) if split_stop else masked_entropy(slogp_BxS, sites.mask)
      ent_B = (jnp.where(s_on, site_ent_B, 0.0)
               + jnp.where(v_on, masked_entropy(vlogp_BxV, values.mask), 0.0))
      ctx_BxD = ctx_BxD + s_on[:, None] * skey_BxD + v_on[:, None] * vkeys_BxVxD[rows, vidx_B]
      return ctx_BxD, (logp_B, ent_B)

    # every step's candidate keys at once, outside the scan: larger matrix products
    keys = self.site_key(self.embed(act.sites)), self.value_key(self.embed(act.values))
    steps_first = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), (act.sites, act.values, act.site_idx,
                                                                 act.value_idx, act.site_on, act.value_on, *keys))
    _, (logp_MxB, ent_MxB) = jax.lax.scan(step, jnp.zeros_like(h_BxD),
                                          (jnp.arange(act.site_idx.shape[1]), *steps_first))
    n_B = act.site_on.sum(1) + act.value_on.sum(1)
    return logp_MxB.sum(0), ent_MxB.sum(0), n_B, value_B


# ---------------------------------------------------------------------------------------------------------------
# Parameters as one flat vector. The jitted functions below take (cfg, flat): cfg is static and hashable, so
# every agent with the same architecture shares their compiled code, and Adam updates one vector (a
# per-leaf optimizer doubles the update's compile time).

@functools.lru_cache(maxsize=None)
def structure(cfg: NetConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """The module's graph and its abstract parameters (shapes only)."""
  return nnx.split(nnx.eval_shape(lambda: PolicyValueNet(cfg, nnx.Rngs(0))))


def build(cfg: NetConfig, flat: jax.Array) -> PolicyValueNet:
  """The network with parameters `flat` (call inside jit)."""
  graphdef, abstract = structure(cfg)
  leaves, treedef = jax.tree.flatten(abstract)
  parts, offset = [], 0
  for leaf in leaves:
    parts.append(flat[offset:offset + leaf.size].reshape(leaf.shape))
    offset += leaf.size
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, parts))


@functools.lru_cache(maxsize=None)
def surrogate_mask(cfg: NetConfig) -> np.ndarray:
  """[num_params] bool: the entries of the flat vector that belong to the surrogate (none without one)."""
  paths_leaves = jax.tree_util.tree_flatten_with_path(structure(cfg)[1])[0]
  return np.concatenate([np.full(leaf.size, str(getattr(path[0], "key", "")) == "surrogate")
                         for path, leaf in paths_leaves])


@functools.lru_cache(maxsize=None)
def _scorer_slices(cfg: NetConfig) -> list[tuple[slice, tuple[int, ...]]]:
  """Where the neighbour scorer's kernels and biases lie in the flat vector, layer by layer (kernel, bias)."""
  found: dict[tuple[int, str], tuple[slice, tuple[int, ...]]] = {}
  offset = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(structure(cfg)[1])[0]:
    names = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
    if names[0] == "scorer":
      found[(int(names[1]), str(names[2]))] = (slice(offset, offset + leaf.size), leaf.shape)
    offset += leaf.size
  if not found:
    raise ValueError("this network has no neighbour scorer (NetConfig.neighbour_guide)")
  return [found[(k, name)] for k in range(len(found) // 2) for name in ("kernel", "bias")]


def scorer_weights(cfg: NetConfig, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
  """The neighbour scorer's layers [(kernel, bias), ...] as numpy arrays, read from the flat vector."""
  flat = np.asarray(flat)
  parts = [flat[sl].reshape(shape) for sl, shape in _scorer_slices(cfg)]
  return list(zip(parts[::2], parts[1::2]))


def with_scorer(cfg: NetConfig, flat: np.ndarray, weights: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
  """A copy of `flat` with the neighbour scorer's layers set to `weights` (from `neighbours.fit`)."""
  out = np.array(flat, np.float32)
  slices = _scorer_slices(cfg)
  arrays = [a for layer in weights for a in layer]
  if [np.shape(a) for a in arrays] != [shape for _, shape in slices]:
    raise ValueError(f"scorer weights of shapes {[np.shape(a) for a in arrays]} do not fit this network's "
                     f"{[shape for _, shape in slices]}")
  for (sl, _), a in zip(slices, arrays):
    out[sl] = np.ravel(a)
  return out


def num_params(cfg: NetConfig) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(structure(cfg)[1]))


def init_params(cfg: NetConfig, seed: int, stop_bias: float = 1.0, prior: float = 4.0,
                table_scale: float = 1.0, guide: float = 10.0, neighbour_guide: float = 300.0) -> np.ndarray:
  """The flat float32 parameter vector, drawn in numpy (running the initialisers through XLA would
  compile dozens of tiny programs: seconds on a busy CPU).

  Kernels ~ N(0, 1/fan_in) (the critic's output layer x0.01, so early values do not swamp the returns),
  biases 0, norm scales 1, embeddings ~ N(0, 0.25). `stop_bias` is STOP's extra logit (P(STOP after an
  edit) starts near sigmoid(stop_bias)); `prior` the weight of a candidate's regret in its logit; `guide` the
  surrogate's weight in the logits (its output layer starts at 0, so its scores do too); `neighbour_guide` the
  neighbour scorer's (whose layers are drawn here and replaced by a fitted scorer: `with_scorer`); `table_scale`
  scales the hashed-string table's draws (0: every string starts at the zero vector, so a token starts as its
  numbers and kind only; the other draws are the same for any value).
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf) -> np.ndarray:
    names = [str(getattr(k, "key", "")) for k in path]
    shape = leaf.shape
    if "kernel" in names:
      scale = {("critic", "fc2"): 0.01, ("surrogate", "fc2"): 0.0}.get(tuple(names[:2]), 1.0)
      return scale * rng.normal(0, 1 / math.sqrt(shape[0]), shape)
    if "embedding" in names:
      return (table_scale if names[0] == "table" else 1.0) * rng.normal(0, 0.5, shape)
    if "num_w" in names:
      return rng.normal(0, 1 / math.sqrt(NUM_FEATS), shape)
    if "scale" in names:
      return np.ones(shape)
    if "stop_bias" in names:
      return np.full(shape, stop_bias)
    if "sur_w" in names:
      return np.full(shape, guide)
    if "nb_w" in names:
      return np.full(shape, neighbour_guide)
    if "prior_w" in names:
      w = np.zeros(shape)
      w[[KIND_SITE, KIND_VALUE], REGRET] = prior
      return w
    return np.zeros(shape)  # biases

  drawn = jax.tree_util.tree_map_with_path(draw, structure(cfg)[1])
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(drawn)]).astype(np.float32)


# Jitted entry points for sampling, one proposal at a time (B = 1).

@functools.partial(jax.jit, static_argnums=0)
def encode(cfg: NetConfig, flat: jax.Array, obs: Tokens) -> tuple[jax.Array, jax.Array]:
  return build(cfg, flat).encode(obs)


@functools.partial(jax.jit, static_argnums=0)
def site_scores(cfg: NetConfig, flat, h_BxD, ctx_BxD, step, sites: Tokens):
  return build(cfg, flat).site_scores(h_BxD, ctx_BxD, step, sites)


@functools.partial(jax.jit, static_argnums=0)
def value_scores(cfg: NetConfig, flat, h_BxD, ctx_BxD, step, site_key_BxD, values: Tokens):
  return build(cfg, flat).value_scores(h_BxD, ctx_BxD, step, site_key_BxD, values)


@functools.partial(jax.jit, static_argnums=0)
def predict(cfg: NetConfig, flat, candidates: Tokens):
  return build(cfg, flat).predict(candidates)


@functools.partial(jax.jit, static_argnums=0)
def evaluate(cfg: NetConfig, flat, obs: Tokens, act: Actions):
  return build(cfg, flat).evaluate(obs, act)
