"""autoresearch's MuonAdamW on optax: Muon (Polar Express + NorMuon + cautious WD) and AdamW groups.

Parameters are grouped by the first element of their pytree path (see `param_labels`) and routed with
`optax.partition`. AdamW groups are `optax.scale_by_adam` followed by a learning-rate scale; the Muon group
is written here because optax's `contrib.muon` differs (bias-corrected momentum, other normalisation, no
NorMuon, no cautious decay).

Per-step schedule values are traced scalars passed as extra args, so changing them never retraces:

  tx = build_optimizer(params, program.optim, program.model.d_model)
  state = tx.init(params)
  updates, state = tx.update(grads, state, params, lr_mult=lrm, muon_momentum=mom, weight_decay=wd)
  params = optax.apply_updates(params, updates)

Linear weights are stored (in, out) in JAX, the transpose of torch's (out, in). Below, "rows"/"cols" mean
torch's convention (rows = out = shape[1], cols = in = shape[0]) so the formulas read like autoresearch's.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nanochat_jax.config import OptimConfig
from nanochat_jax.registry import Registry

# Polar Express coefficients (Amsel et al. 2025) as used by autoresearch; the first ns_steps are applied.
POLAR_EXPRESS_COEFFS: tuple[tuple[float, float, float], ...] = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)

# Group labels returned by `param_labels`.
EMBEDDING = "embedding"      # wte, value_embeds
UNEMBEDDING = "unembedding"  # lm_head
RESID = "resid"              # resid_lambdas
X0 = "x0"                    # x0_lambdas
SCALAR = "scalar"            # non-2-D leaves inside blocks
MUON = "muon"                # 2-D leaves inside blocks
GROUPS: tuple[str, ...] = (EMBEDDING, UNEMBEDDING, RESID, X0, SCALAR, MUON)

_TOP_LEVEL: dict[str, str] = {
    "wte": EMBEDDING,
    "value_embeds": EMBEDDING,
    "lm_head": UNEMBEDDING,
    "resid_lambdas": RESID,
    "x0_lambdas": X0,
}


def _first_key_name(path: tuple[Any, ...]) -> Any:
  if not path:
    raise ValueError("params must be a tree keyed by name (wte, blocks, ...), got a bare array")
  key = path[0]
  for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
    if hasattr(key, attr):
      return getattr(key, attr)
  return key


def _label(path: tuple[Any, ...], leaf: Any) -> str:
  name = _first_key_name(path)
  if name == "blocks":
    return MUON if jnp.ndim(leaf) == 2 else SCALAR
  if name not in _TOP_LEVEL:
    raise ValueError(
        f"unknown top-level parameter {name!r}; expected one of {sorted([*_TOP_LEVEL, 'blocks'])}")
  return _TOP_LEVEL[name]


def param_labels(params: Any) -> Any:
  """Pytree of group labels (one of `GROUPS`) with the structure of `params`."""
  return jax.tree_util.tree_map_with_path(_label, params)


# ---------------------------------------------------------------------------------------------- Muon


def polar_express(g_IxO: jax.Array, ns_steps: int, compute_dtype: Any = jnp.float32) -> jax.Array:
  """Approximate orthogonal polar factor of one matrix; returns compute_dtype.

  The iteration satisfies f(X.T) = f(X).T, so the Gram matrix is always formed on the smaller side; this is
  autoresearch's tall/wide branch choice for the torch-oriented transpose.
  """
  x = g_IxO.astype(compute_dtype)
  x = x / (jnp.linalg.norm(x) * 1.02 + 1e-6)
  transposed = x.shape[0] > x.shape[1]
  if transposed:
    x = x.T
  for a, b, c in POLAR_EXPRESS_COEFFS[:ns_steps]:
    gram = x @ x.T
    x = a * x + (b * gram + c * (gram @ gram)) @ x
  return x.T if transposed else x


def _reduce_axis(shape: tuple[int, ...]) -> int:
  """NorMuon's reduction axis: torch reduces cols if rows >= cols else rows; (in, out) -> 0 = cols, 1 = rows."""
  cols, rows = shape
  return 0 if rows >= cols else 1


def _second_moment_shape(shape: tuple[int, ...]) -> tuple[int, int]:
  return (1, shape[1]) if _reduce_axis(shape) == 0 else (shape[0], 1)


class NorMuonState(NamedTuple):
  # Matrices of one shape are stacked (as autoresearch does): fewer, batched kernels and a compile time that
  # grows with the number of distinct shapes, not of matrices. Keys are shapes "IxO" (JAX layout).
  momentum: dict[str, jax.Array]       # fp32, N x I x O
  second_moment: dict[str, jax.Array]  # fp32, N x 1 x O or N x I x 1


def _shape_groups(leaves: list[Any]) -> dict[str, list[int]]:
  """Leaf indices grouped by shape key "IxO", in order of first appearance."""
  groups: dict[str, list[int]] = {}
  for i, leaf in enumerate(leaves):
    if jnp.ndim(leaf) != 2:
      raise ValueError(f"Muon only takes 2-D matrices, got shape {jnp.shape(leaf)}")
    groups.setdefault("x".join(map(str, leaf.shape)), []).append(i)
  return groups


def _normuon_matrix(g: jax.Array, buf: jax.Array, v: jax.Array, p: jax.Array, *, lr: float, beta2: float,
                    ns_steps: int, compute_dtype: Any, lr_mult: jax.Array, momentum: jax.Array,
                    weight_decay: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One matrix: returns (update to add to p, new momentum buffer, new second moment)."""
  g = g.astype(jnp.float32)
  buf = buf + (1 - momentum) * (g - buf)
  g = g + momentum * (buf - g)  # Nesterov
  g = polar_express(g, ns_steps, compute_dtype).astype(jnp.float32)
  # NorMuon: per-neuron second moment along the larger side, then restore the pre-normalisation norm.
  axis = _reduce_axis(g.shape)
  n = g.shape[axis]
  v_mean = jnp.mean(jnp.square(g), axis=axis, keepdims=True)
  v_norm = jnp.sqrt(jnp.sum(v_mean) * n)
  v = v + (1 - beta2) * (v_mean - v)
  step = jax.lax.rsqrt(jnp.maximum(v, 1e-10))
  v_norm_new = jnp.sqrt(jnp.sum(v_mean * n * jnp.square(step)))
  g = g * (step * (v_norm / jnp.maximum(v_norm_new, 1e-10)))
  cols, rows = g.shape
  lr_eff = lr * math.sqrt(max(1.0, rows / cols)) * lr_mult
  decay_mask = (g * p) >= 0  # cautious: only decay where the update already shrinks |p|
  update = -(lr_eff * g + lr_eff * weight_decay * p * decay_mask)
  return update.astype(p.dtype), buf, v


def normuon(lr: float, beta2: float, ns_steps: int,
            compute_dtype: Any = jnp.float32) -> optax.GradientTransformationExtraArgs:
  """Muon with Nesterov momentum, Polar Express, NorMuon and cautious weight decay; outputs final updates.

  Extra args of `update` (traced scalars): lr_mult, muon_momentum, weight_decay. Needs `params`.
  """

  def init(params: Any) -> NorMuonState:
    leaves = jax.tree.leaves(params)
    momentum, second = {}, {}
    for key, idx in _shape_groups(leaves).items():
      shape = leaves[idx[0]].shape
      momentum[key] = jnp.zeros((len(idx), *shape), jnp.float32)
      second[key] = jnp.zeros((len(idx), *_second_moment_shape(shape)), jnp.float32)
    return NorMuonState(momentum, second)

  def update(updates: Any, state: NorMuonState, params: Any = None, *, lr_mult: jax.Array,
             muon_momentum: jax.Array, weight_decay: jax.Array, **_: Any) -> tuple[Any, NorMuonState]:
    if params is None:
      raise ValueError("Muon needs params for cautious weight decay: call update(grads, state, params, ...)")
    g_leaves, treedef = jax.tree.flatten(updates)
    p_leaves = jax.tree.leaves(params)
    if [x.shape for x in p_leaves] != [x.shape for x in g_leaves]:
      raise ValueError("grads and params must have the same structure and shapes")
    step = jax.vmap(functools.partial(
        _normuon_matrix, lr=lr, beta2=beta2, ns_steps=ns_steps, compute_dtype=compute_dtype, lr_mult=lr_mult,
        momentum=muon_momentum, weight_decay=weight_decay))
    out: list[Any] = [None] * len(g_leaves)
    momentum, second = {}, {}
    for key, idx in _shape_groups(g_leaves).items():
      stack = lambda leaves: jnp.stack([leaves[i] for i in idx])
      u_NxIxO, momentum[key], second[key] = step(
          stack(g_leaves), state.momentum[key], state.second_moment[key], stack(p_leaves))
      for n, i in enumerate(idx):
        out[i] = u_NxIxO[n]
    return treedef.unflatten(out), NorMuonState(momentum, second)

  return optax.GradientTransformationExtraArgs(init, update)


def muon(optim: OptimConfig, compute_dtype: Any) -> optax.GradientTransformationExtraArgs:
  return normuon(optim.matrix_lr, optim.muon_beta2, optim.muon_ns_steps, compute_dtype)


# OptimConfig(matrix_optimizer=name): builder(optim, compute_dtype) -> a transformation of the block matrices that
# outputs final updates (learning rate and sign applied) and takes the traced extra args lr_mult, muon_momentum
# and weight_decay (it may ignore them; **_ swallows the rest).
MatrixOptimizer = Callable[[OptimConfig, Any], optax.GradientTransformationExtraArgs]
MATRIX_OPTIMIZERS: Registry[MatrixOptimizer] = Registry("matrix_optimizer", {"muon": muon})


# --------------------------------------------------------------------------------------------- AdamW


def scale_by_scheduled_lr(lr: float) -> optax.GradientTransformationExtraArgs:
  """updates * -(lr * lr_mult), with lr_mult a traced extra arg."""

  def update(updates: Any, state: Any, params: Any = None, *, lr_mult: jax.Array,
             **_: Any) -> tuple[Any, Any]:
    del params
    return jax.tree.map(lambda u: u * jnp.asarray(-lr * lr_mult, u.dtype), updates), state

  return optax.GradientTransformationExtraArgs(optax.init_empty_state, update)


def _adam(lr: float, b1: float, optim: OptimConfig) -> optax.GradientTransformationExtraArgs:
  # eps is added after sqrt of the bias-corrected second moment, exactly as torch/autoresearch; no decay.
  return optax.chain(optax.scale_by_adam(b1=b1, b2=optim.adam_beta2, eps=optim.adam_eps),
                     scale_by_scheduled_lr(lr))


# ------------------------------------------------------------------------------------------- builder


def _check_params(params: Any) -> None:
  labels = param_labels(params)  # raises on unknown names
  if not jax.tree.leaves(labels):
    raise ValueError("params has no array leaves")
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise ValueError(f"parameter {jax.tree_util.keystr(path)} must be floating point, got {leaf.dtype}")


def build_optimizer(params: Any, optim: OptimConfig, d_model: int,
                    compute_dtype: Any = jnp.float32) -> optax.GradientTransformationExtraArgs:
  """autoresearch's MuonAdamW as an optax transformation with traced per-step scalars.

  Args:
    params: the fp32 parameter tree (e.g. `nnx.state(model, nnx.Param)`); only checked here.
    optim: learning rates, betas and Muon settings.
    d_model: model width; AdamW embedding/unembedding lrs are scaled by `optim.lr_scale(d_model)`.
    compute_dtype: dtype of the Polar Express matmuls (bf16 on GPU, fp32 on CPU).

  Returns:
    A transformation with `init(params) -> state` and
    `update(grads, state, params, *, lr_mult, muon_momentum, weight_decay) -> (updates, state)`;
    apply with `optax.apply_updates`. `lr_mult` scales every group; momentum and decay are Muon-only.
  """
  if d_model < 1:
    raise ValueError(f"d_model must be >= 1, got {d_model}")
  if not 1 <= optim.muon_ns_steps <= len(POLAR_EXPRESS_COEFFS):
    raise ValueError(f"muon_ns_steps must be in 1..{len(POLAR_EXPRESS_COEFFS)}, got {optim.muon_ns_steps}")
  if not jnp.issubdtype(compute_dtype, jnp.floating):
    raise ValueError(f"compute_dtype must be a floating dtype (float32 or bfloat16), got {compute_dtype}")
  _check_params(params)
  s = optim.lr_scale(d_model)
  inner = optax.partition(
      {
          EMBEDDING: _adam(optim.embedding_lr * s, optim.adam_beta1, optim),
          UNEMBEDDING: _adam(optim.unembedding_lr * s, optim.adam_beta1, optim),
          RESID: _adam(optim.scalar_lr * optim.resid_lr_mult, optim.adam_beta1, optim),
          X0: _adam(optim.scalar_lr, optim.x0_beta1, optim),
          SCALAR: _adam(optim.scalar_lr, optim.adam_beta1, optim),
          MUON: MATRIX_OPTIMIZERS.lookup(optim.matrix_optimizer)(optim, compute_dtype),
      },
      param_labels)

  def update(grads: Any, state: Any, params: Any = None, *, lr_mult: Any, muon_momentum: Any,
             weight_decay: Any) -> tuple[Any, Any]:
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # Python floats or traced scalars
    return inner.update(grads, state, params, lr_mult=f32(lr_mult), muon_momentum=f32(muon_momentum),
                        weight_decay=f32(weight_decay))

  return optax.GradientTransformationExtraArgs(inner.init, update)


def group_sizes(params: Any) -> dict[str, int]:
  """Number of scalars per group label (for logging)."""
  sizes = dict.fromkeys(GROUPS, 0)
  for label, leaf in zip(jax.tree.leaves(param_labels(params)), jax.tree.leaves(params)):
    sizes[label] += int(jnp.size(leaf))
  return sizes

