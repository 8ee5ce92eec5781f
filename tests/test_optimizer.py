"""MuonAdamW on optax vs a slow NumPy reference written in torch orientation (as autoresearch's)."""
from __future__ import annotations

import functools
import importlib.util
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nanochat_jax.config import ModelConfig, OptimConfig
from nanochat_jax.optimizer import build_optimizer, group_sizes, param_labels, polar_express

# Spelled out again so the reference does not share code with the module under test.
REF_COEFFS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]
D_MODEL = 16


# ------------------------------------------------------------------------------------- NumPy reference


def lerp(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
  return a + w * (b - a)


def ref_polar_express(g: np.ndarray, ns_steps: int) -> np.ndarray:
  """g in torch (rows=out, cols=in) orientation."""
  x = g / (np.sqrt(np.sum(g * g)) * 1.02 + 1e-6)
  rows, cols = x.shape
  for a, b, c in REF_COEFFS[:ns_steps]:
    if rows > cols:
      gram = x.T @ x
      x = a * x + x @ (b * gram + c * gram @ gram)
    else:
      gram = x @ x.T
      x = a * x + (b * gram + c * gram @ gram) @ x
  return x


class RefMuon:
  """One matrix, torch orientation, explicit loops for NorMuon and the cautious update."""

  def __init__(self, shape_torch: tuple[int, int], lr: float, beta2: float, ns_steps: int):
    rows, cols = shape_torch
    self.red_rows = rows < cols  # reduce over rows (dim -2) only when the matrix is wide
    self.buf = np.zeros(shape_torch)
    self.v = np.zeros((1, cols) if self.red_rows else (rows, 1))
    self.lr, self.beta2, self.ns_steps = lr, beta2, ns_steps

  def step(self, p: np.ndarray, g: np.ndarray, lr_mult: float, momentum: float, wd: float) -> np.ndarray:
    self.buf = lerp(self.buf, g, 1 - momentum)
    g = ref_polar_express(lerp(g, self.buf, momentum), self.ns_steps)
    rows, cols = g.shape
    n = rows if self.red_rows else cols
    v_mean = np.zeros_like(self.v)
    for i in range(rows):
      for j in range(cols):
        v_mean[(0, j) if self.red_rows else (i, 0)] += g[i, j] ** 2 / n
    v_norm = math.sqrt(v_mean.sum() * n)
    self.v = lerp(self.v, v_mean, 1 - self.beta2)
    step = 1 / np.sqrt(np.maximum(self.v, 1e-10))
    v_norm_new = math.sqrt(np.sum(v_mean * n * step ** 2))
    g = g * step * (v_norm / max(v_norm_new, 1e-10))
    lr_eff = self.lr * lr_mult * math.sqrt(max(1.0, rows / cols))
    out = p.copy()
    for i in range(rows):
      for j in range(cols):
        decay = wd * p[i, j] if g[i, j] * p[i, j] >= 0 else 0.0
        out[i, j] = p[i, j] - lr_eff * g[i, j] - lr_eff * decay
    return out


class RefAdam:
  """torch-style AdamW without decay: p -= lr/bias1 * m / (sqrt(v/bias2) + eps)."""

  def __init__(self, shape: tuple[int, ...], lr: float, b1: float, b2: float, eps: float):
    self.m, self.v, self.t = np.zeros(shape), np.zeros(shape), 0
    self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps

  def step(self, p: np.ndarray, g: np.ndarray, lr_mult: float, momentum: float, wd: float) -> np.ndarray:
    del momentum, wd
    self.t += 1
    self.m = lerp(self.m, g, 1 - self.b1)
    self.v = lerp(self.v, g * g, 1 - self.b2)
    denom = np.sqrt(self.v / (1 - self.b2 ** self.t)) + self.eps
    return p - self.lr * lr_mult / (1 - self.b1 ** self.t) * self.m / denom


# ------------------------------------------------------------------------------------------- fixtures


def toy_params(seed: int) -> dict:
  """Shaped like the GPT's param tree; JAX layout (in, out). Few distinct shapes keep CPU compiles short."""
  block = {"attn": {"c_q": (D_MODEL, D_MODEL)},                        # square
           "mlp": {"c_fc": (D_MODEL, 48), "c_proj": (48, D_MODEL)},   # torch-tall; torch-wide
           "norm": {"scale": (D_MODEL,)}}
  shapes = {"wte": (32, D_MODEL), "value_embeds": {"1": (32, 8)}, "lm_head": (D_MODEL, 32),
            "resid_lambdas": (2,), "x0_lambdas": (2,), "blocks": [block, block]}
  rng = np.random.default_rng(seed)  # NumPy: jax.random would compile one kernel per shape
  return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s), jnp.float32), shapes,
                      is_leaf=lambda x: isinstance(x, tuple))


@functools.lru_cache(maxsize=None)
def jitted(optim: OptimConfig) -> tuple[Callable, Callable]:
  """(init, update) for the toy tree, compiled once per config and shared by tests."""
  tx = build_optimizer(toy_params(0), optim, D_MODEL)
  return jax.jit(tx.init), jax.jit(tx.update)


def ref_for(path: str, shape: tuple[int, ...], optim: OptimConfig):
  s = optim.lr_scale(D_MODEL)
  adam = lambda lr, b1: RefAdam(shape, lr, b1, optim.adam_beta2, optim.adam_eps)
  top = path.split("/")[0]
  if top == "blocks":
    if len(shape) == 2:
      return RefMuon(shape[::-1], optim.matrix_lr, optim.muon_beta2, optim.muon_ns_steps)
    return adam(optim.scalar_lr, optim.adam_beta1)
  return {"wte": lambda: adam(optim.embedding_lr * s, optim.adam_beta1),
          "value_embeds": lambda: adam(optim.embedding_lr * s, optim.adam_beta1),
          "lm_head": lambda: adam(optim.unembedding_lr * s, optim.adam_beta1),
          "resid_lambdas": lambda: adam(optim.scalar_lr * optim.resid_lr_mult, optim.adam_beta1),
          "x0_lambdas": lambda: adam(optim.scalar_lr, optim.x0_beta1)}[top]()


def path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


SCHEDULE = [(1.0, 0.85, 0.2), (0.7, 0.88, 0.15), (0.3, 0.92, 0.1), (0.1, 0.95, 0.0)]  # lr_mult, mom, wd


# ---------------------------------------------------------------------------------------------- tests


def test_matches_numpy_reference():
  optim = OptimConfig()
  params = toy_params(0)
  init, step = jitted(optim)
  state = init(params)

  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  paths = [path_str(p) for p, _ in flat]
  refs = [ref_for(p, x.shape, optim) for p, (_, x) in zip(paths, flat)]
  ref_p = [np.asarray(x, np.float64) for _, x in flat]
  start = [p.copy() for p in ref_p]
  rng = np.random.default_rng(1)
  for lr_mult, mom, wd in SCHEDULE:
    grads_np = [rng.standard_normal(p.shape).astype(np.float32) for p in ref_p]
    for i, (r, g) in enumerate(zip(refs, grads_np)):
      g = g.astype(np.float64)
      if isinstance(r, RefMuon):  # the reference works on torch's (out, in) transpose
        ref_p[i] = r.step(ref_p[i].T, g.T, lr_mult, mom, wd).T
      else:
        ref_p[i] = r.step(ref_p[i], g, lr_mult, mom, wd)
    grads = treedef.unflatten([jnp.asarray(g) for g in grads_np])
    updates, state = step(grads, state, params, lr_mult=jnp.float32(lr_mult),
                          muon_momentum=jnp.float32(mom), weight_decay=jnp.float32(wd))
    params = optax.apply_updates(params, updates)

  for path, p, ref, p0 in zip(paths, jax.tree.leaves(params), ref_p, start):
    moved, ref_moved = np.asarray(p, np.float64) - p0, ref - p0
    scale = np.abs(ref_moved).max()
    assert scale > 0, path
    fp32_storage = len(SCHEDULE) * np.finfo(np.float32).eps * np.abs(ref).max()  # params are rounded each step
    np.testing.assert_allclose(moved, ref_moved, atol=1e-5 * scale + fp32_storage, rtol=0, err_msg=path)


def test_zero_grad_gives_cautious_decay_only():
  optim = OptimConfig()
  params = toy_params(2)
  init, step = jitted(optim)
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = step(grads, init(params), params, lr_mult=jnp.float32(0.5), muon_momentum=jnp.float32(0.9),
                    weight_decay=jnp.float32(0.2))
  for label, u, p in zip(jax.tree.leaves(param_labels(params)), jax.tree.leaves(updates),
                         jax.tree.leaves(params)):
    if label == "muon":  # zero update direction -> mask all true -> pure decay at the shape-scaled lr
      fan_in, fan_out = p.shape
      lr_eff = optim.matrix_lr * 0.5 * math.sqrt(max(1.0, fan_out / fan_in))
      np.testing.assert_allclose(u, -lr_eff * 0.2 * p, rtol=1e-6, atol=1e-12)
    else:
      np.testing.assert_array_equal(u, 0.0)


@pytest.mark.parametrize("shape,ns_steps", [((24, 64), 5), ((64, 24), 5), ((40, 40), 5), ((24, 64), 2)])
def test_polar_express_orientation_and_reference(shape: tuple[int, int], ns_steps: int):
  x = jnp.asarray(np.random.default_rng(3).standard_normal(shape), jnp.float32)
  out = np.asarray(polar_express(x, ns_steps))
  np.testing.assert_allclose(out, ref_polar_express(np.asarray(x, np.float64).T, ns_steps).T, atol=1e-5)
  np.testing.assert_allclose(np.asarray(polar_express(x.T, ns_steps)), out.T, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_polar_express_singular_values_near_one(dtype):
  x = jnp.asarray(np.random.default_rng(4).standard_normal((48, 128)), jnp.float32)
  out = polar_express(x, 5, dtype)
  assert out.dtype == dtype
  sv = np.linalg.svd(np.asarray(out, np.float32), compute_uv=False)
  assert 0.7 < sv.min() and sv.max() < 1.25, (sv.min(), sv.max())


def test_labels_on_model_shaped_tree():
  params = toy_params(0)
  labels = param_labels(params)
  assert labels["wte"] == "embedding" and labels["value_embeds"]["1"] == "embedding"
  assert labels["lm_head"] == "unembedding"
  assert labels["resid_lambdas"] == "resid" and labels["x0_lambdas"] == "x0"
  assert labels["blocks"][0]["attn"]["c_q"] == "muon" and labels["blocks"][1]["mlp"]["c_proj"] == "muon"
  assert labels["blocks"][0]["norm"]["scale"] == "scalar"
  sizes = group_sizes(params)
  assert sizes["muon"] == 2 * (16 * 16 + 2 * 16 * 48) and sizes["embedding"] == 32 * 16 + 32 * 8
  assert sizes["scalar"] == 2 * 16 and sum(sizes.values()) == sum(x.size for x in jax.tree.leaves(params))


def test_unknown_top_level_name_raises():
  params = {"wte": jnp.zeros((4, 2)), "pos_emb": jnp.zeros((4, 2))}
  with pytest.raises(ValueError, match="pos_emb"):
    param_labels(params)
  with pytest.raises(ValueError, match="pos_emb"):
    build_optimizer(params, OptimConfig(), D_MODEL)


def test_bad_arguments_raise():
  params = toy_params(0)
  with pytest.raises(ValueError, match="compute_dtype"):
    build_optimizer(params, OptimConfig(), D_MODEL, compute_dtype=jnp.int32)
  with pytest.raises(ValueError, match="muon_ns_steps"):
    build_optimizer(params, OptimConfig(muon_ns_steps=6), D_MODEL)
  tx = build_optimizer(params, OptimConfig(), D_MODEL)
  with pytest.raises(ValueError, match="params"):
    tx.update(params, tx.init(params), None, lr_mult=1.0, muon_momentum=0.9, weight_decay=0.1)


def test_changing_scalars_does_not_retrace_and_donation_works():
  params = {"wte": jnp.ones((4, 3)), "blocks": [{"w": jnp.eye(3, 5)}]}
  tx = build_optimizer(params, OptimConfig(muon_ns_steps=1), D_MODEL)
  traces = []

  def train_step(params, state, grads, lr_mult, mom, wd):
    traces.append(1)
    updates, state = tx.update(grads, state, params, lr_mult=lr_mult, muon_momentum=mom, weight_decay=wd)
    return optax.apply_updates(params, updates), state

  step = jax.jit(train_step, donate_argnums=(0, 1))
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  p = jax.tree.map(jnp.copy, params)
  seen = []
  for lr_mult, mom, wd in SCHEDULE:
    p, state = step(p, state, grads, jnp.float32(lr_mult), jnp.float32(mom), jnp.float32(wd))
    seen.append([np.asarray(x).copy() for x in jax.tree.leaves(p)])
  assert len(traces) == 1
  for before, after in zip(seen, seen[1:]):  # every group kept moving: scalars and state took effect
    assert all(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.skipif(importlib.util.find_spec("nanochat_jax.model") is None, reason="model module missing")
def test_one_step_on_real_gpt_params():
  from flax import nnx

  from nanochat_jax.model import GPT
  cfg = ModelConfig(vocab_size=64, sequence_len=16, depth=1, aspect_ratio=32, head_dim=32)
  abstract = nnx.state(nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0))), nnx.Param)
  rng = np.random.default_rng(6)  # real tree structure without paying for the model's random init
  params = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), a.dtype), abstract)
  grads = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), a.dtype), abstract)
  tx = build_optimizer(params, OptimConfig(), cfg.d_model)
  updates, _ = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params, lr_mult=jnp.float32(1.0),
                                  muon_momentum=jnp.float32(0.85), weight_decay=jnp.float32(0.2))
  new = optax.apply_updates(params, updates)
  labels = param_labels(params)
  assert set(jax.tree.leaves(labels)) == {"embedding", "unembedding", "resid", "x0", "muon"}
  for leaf_old, leaf_new in zip(jax.tree.leaves(params), jax.tree.leaves(new)):
    assert leaf_new.shape == leaf_old.shape and leaf_new.dtype == jnp.float32
    assert np.all(np.isfinite(leaf_new)) and not np.array_equal(leaf_new, leaf_old)
