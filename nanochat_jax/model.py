"""The nanochat GPT of autoresearch's train.py, in Flax NNX.

Read top to bottom: norms, MLP variants, positional encodings, attention, block, GPT, then the
accounting helpers (`num_params`, `flops_per_token`) and the per-token loss.

Layout contract (the optimizer labels parameters by the first element of their path):
  wte (V, D) | blocks[i].attn.{c_q, c_k, c_v, c_proj, ve_gate} | blocks[i].mlp.* | value_embeds['i'] (V, Hkv*hd)
  | lm_head (D, V) | resid_lambdas (depth,) | x0_lambdas (depth,).
Matrices are stored (in, out) and applied as `x @ w`; there are no biases. Parameters are always fp32; every
matmul runs in the compute dtype of the activations (the model's `dtype`); the lm_head matmul emits fp32 logits.

Every module kind a Program names by string (mlp, norm, attention, posenc) has a `Registry` here; a new variant
is one `register` call on it (arrl's `register_variant` also makes it searchable).

Shape letters: B batch, T time, D d_model, V vocab, H query heads, G kv heads, K head_dim, R = K/2.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from nanochat_jax.config import ModelConfig
from nanochat_jax.registry import Registry

NormFn = Callable[[jax.Array], jax.Array]

# autoresearch's F.rms_norm uses torch's default eps = finfo(float32).eps (~1.19e-7) for fp32 inputs. We always
# compute norm statistics in fp32 with that eps, for any compute dtype, so fp32 runs match the torch model.
NORM_EPS = float(jnp.finfo(jnp.float32).eps)


def rms_norm(x: jax.Array) -> jax.Array:
  """Parameter-free RMSNorm over the last axis."""
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + NORM_EPS)
  return y.astype(x.dtype)


def layer_norm(x: jax.Array) -> jax.Array:
  """Parameter-free LayerNorm (mean-centred, unit variance) over the last axis."""
  x32 = x.astype(jnp.float32)
  centred = x32 - jnp.mean(x32, axis=-1, keepdims=True)
  y = centred * jax.lax.rsqrt(jnp.mean(jnp.square(centred), axis=-1, keepdims=True) + NORM_EPS)
  return y.astype(x.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Parameter helpers: fp32 storage, cast to the activation dtype at use.

def _uniform(rngs: nnx.Rngs, shape: tuple[int, ...], bound: float) -> nnx.Param:
  return nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound))


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], std: float) -> nnx.Param:
  return nnx.Param(std * jax.random.normal(rngs.params(), shape, jnp.float32))


def _zeros(shape: tuple[int, ...]) -> nnx.Param:
  return nnx.Param(jnp.zeros(shape, jnp.float32))


def dense(x: jax.Array, w_DxF: nnx.Param, out_dtype: jnp.dtype | None = None) -> jax.Array:
  """x @ w for x of shape (..., D), computed as one 2-D matmul in x's dtype.

  Flattening matters on XLA CPU: a dot of a (B, T, D) input runs its forward+backward ~3x slower than the
  same dot on (B*T, D), with the same result (benchmarks/results/cpu_fast_path). Use it in new modules too.
  `out_dtype` sets the matmul's accumulation/output dtype (fp32 logits from a bf16 matmul).
  """
  y_NxF = jnp.matmul(x.reshape(-1, x.shape[-1]), w_DxF[...].astype(x.dtype), preferred_element_type=out_dtype)
  return y_NxF.reshape(*x.shape[:-1], y_NxF.shape[-1])


# ---------------------------------------------------------------------------------------------------------------
# MLP variants. A builder makes an nnx.Module mapping x_BxTxD -> y_BxTxD; `init_scale` is the uniform init
# bound s of the input projections (output projections start at zero so every block starts as the identity).

class MlpBuilder(Protocol):
  def __call__(self, d_model: int, hidden: int, init_scale: float, rngs: nnx.Rngs) -> nnx.Module: ...


class PointwiseMLP(nnx.Module):
  """c_proj(activation(c_fc(x)))."""

  def __init__(self, d_model: int, hidden: int, init_scale: float, rngs: nnx.Rngs, *,
               activation: Callable[[jax.Array], jax.Array]):
    self.c_fc = _uniform(rngs, (d_model, hidden), init_scale)
    self.c_proj = _zeros((hidden, d_model))
    self.activation = activation

  def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
    return dense(self.activation(dense(x_BxTxD, self.c_fc)), self.c_proj)


class SwiGLU(nnx.Module):
  """c_proj(silu(c_gate(x)) * c_fc(x))."""

  def __init__(self, d_model: int, hidden: int, init_scale: float, rngs: nnx.Rngs):
    self.c_fc = _uniform(rngs, (d_model, hidden), init_scale)
    self.c_gate = _uniform(rngs, (d_model, hidden), init_scale)
    self.c_proj = _zeros((hidden, d_model))

  def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
    return dense(jax.nn.silu(dense(x_BxTxD, self.c_gate)) * dense(x_BxTxD, self.c_fc), self.c_proj)


def relu2(x: jax.Array) -> jax.Array:
  return jnp.square(jax.nn.relu(x))


def gelu(x: jax.Array) -> jax.Array:
  return jax.nn.gelu(x, approximate=False)  # torch's F.gelu default


# ModelConfig(mlp=name): builder(d_model, hidden, init_scale, rngs).
MLP_VARIANTS: Registry[MlpBuilder] = Registry("mlp", {
    "relu2": functools.partial(PointwiseMLP, activation=relu2),
    "swiglu": SwiGLU,
    "gelu": functools.partial(PointwiseMLP, activation=gelu),
})
# ModelConfig(norm=name): a parameter-free fn mapping x -> x normalised over the last axis (same dtype).
NORM_VARIANTS: Registry[NormFn] = Registry("norm", {"rmsnorm": rms_norm, "layernorm": layer_norm})


# ---------------------------------------------------------------------------------------------------------------
# Positional encodings: fn(x_BxTxNxK, cfg) -> x_BxTxNxK, applied to queries and keys before QK-norm.
# Rotary position embedding is nanochat's (half-split convention).

PosEnc = Callable[[jax.Array, ModelConfig], jax.Array]

def rope_tables(seq_len: int, head_dim: int, base: float) -> tuple[jax.Array, jax.Array]:
  """cos_TxR, sin_TxR in fp32 for positions 0..T-1, R = head_dim / 2."""
  inv_freq_R = 1.0 / base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  freqs_TxR = jnp.outer(jnp.arange(seq_len, dtype=jnp.float32), inv_freq_R)
  return jnp.cos(freqs_TxR), jnp.sin(freqs_TxR)


def apply_rope(x_BxTxNxK: jax.Array, cos_TxR: jax.Array, sin_TxR: jax.Array) -> jax.Array:
  r = x_BxTxNxK.shape[-1] // 2
  x1, x2 = x_BxTxNxK[..., :r], x_BxTxNxK[..., r:]
  cos = cos_TxR[None, :, None, :].astype(x_BxTxNxK.dtype)
  sin = sin_TxR[None, :, None, :].astype(x_BxTxNxK.dtype)
  return jnp.concatenate([x1 * cos + x2 * sin, x2 * cos - x1 * sin], axis=-1)


def rope(x_BxTxNxK: jax.Array, cfg: ModelConfig) -> jax.Array:
  cos_TxR, sin_TxR = rope_tables(x_BxTxNxK.shape[1], x_BxTxNxK.shape[-1], cfg.rope_base)
  return apply_rope(x_BxTxNxK, cos_TxR, sin_TxR)


POSENC_VARIANTS: Registry[PosEnc] = Registry("posenc", {"rope": rope})


# ---------------------------------------------------------------------------------------------------------------
# Attention.

def attention_implementation(dtype: jnp.dtype, head_dim: int) -> str:
  """cuDNN flash attention on GPU where it applies (half precision, head_dim a multiple of 8 up to 128), else XLA."""
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  fits = head_dim % 8 == 0 and head_dim <= 128
  return "cudnn" if half and fits and jax.default_backend() == "gpu" else "xla"


def causal_attention(q_BxTxHxK: jax.Array, k_BxTxGxK: jax.Array, v_BxTxGxK: jax.Array, window: int,
                     implementation: str | None = None) -> jax.Array:
  """Causal softmax attention, scale 1/sqrt(head_dim); query i sees keys max(0, i-window)..i. GQA when G < H.

  `implementation` ("xla" or "cudnn") overrides `attention_implementation` (benchmarks compare the two).
  """
  seq_len = q_BxTxHxK.shape[1]
  # jax's local_window_size=(left, 0) keeps keys i-left..i, flash-attn's (w, 0); w >= T is plain causal.
  local = (window, 0) if window < seq_len else None
  return jax.nn.dot_product_attention(
      q_BxTxHxK, k_BxTxGxK, v_BxTxGxK, is_causal=True, local_window_size=local,
      implementation=implementation or attention_implementation(q_BxTxHxK.dtype, q_BxTxHxK.shape[-1]))


class AttentionBuilder(Protocol):
  """Makes the attention of block `layer`: module(x_BxTxD, ve_BxTxGxK or None, window) -> y_BxTxD.

  `norm` and `posenc` are the program's variants; ve is the layer's value embedding when cfg.has_ve(layer).
  """
  def __call__(self, cfg: ModelConfig, layer: int, norm: NormFn, posenc: PosEnc, init_scale: float,
               rngs: nnx.Rngs) -> nnx.Module: ...


class Attention(nnx.Module):
  """autoresearch's: value-embedding mix with a learned gate, posenc then QK-norm, causal windowed attention."""

  def __init__(self, cfg: ModelConfig, layer: int, norm: NormFn, posenc: PosEnc, init_scale: float,
               rngs: nnx.Rngs):
    d, hd = cfg.d_model, cfg.head_dim
    self.c_q = _uniform(rngs, (d, cfg.n_head * hd), init_scale)
    self.c_k = _uniform(rngs, (d, cfg.n_kv * hd), init_scale)
    self.c_v = _uniform(rngs, (d, cfg.n_kv * hd), init_scale)
    self.c_proj = _zeros((d, d))
    # Zero gate -> 2 * sigmoid(0) = 1: value embeddings start fully mixed in.
    self.ve_gate = _zeros((cfg.ve_gate_channels, cfg.n_kv)) if cfg.has_ve(layer) else None
    self.n_head, self.n_kv, self.head_dim = cfg.n_head, cfg.n_kv, hd
    self.cfg = cfg
    self.norm, self.posenc = norm, posenc

  def __call__(self, x_BxTxD: jax.Array, ve_BxTxGxK: jax.Array | None, window: int) -> jax.Array:
    b, t, _ = x_BxTxD.shape
    q_BxTxHxK = dense(x_BxTxD, self.c_q).reshape(b, t, self.n_head, self.head_dim)
    k_BxTxGxK = dense(x_BxTxD, self.c_k).reshape(b, t, self.n_kv, self.head_dim)
    v_BxTxGxK = dense(x_BxTxD, self.c_v).reshape(b, t, self.n_kv, self.head_dim)
    if self.ve_gate is not None:
      gate_BxTxG = 2 * jax.nn.sigmoid(dense(x_BxTxD[..., :self.ve_gate.shape[0]], self.ve_gate))
      v_BxTxGxK = v_BxTxGxK + gate_BxTxG[..., None] * ve_BxTxGxK
    q_BxTxHxK = self.norm(self.posenc(q_BxTxHxK, self.cfg))  # QK-norm after the positional encoding
    k_BxTxGxK = self.norm(self.posenc(k_BxTxGxK, self.cfg))
    y_BxTxHxK = causal_attention(q_BxTxHxK, k_BxTxGxK, v_BxTxGxK, window)
    return dense(y_BxTxHxK.reshape(b, t, -1), self.c_proj)


ATTENTION_VARIANTS: Registry[AttentionBuilder] = Registry("attention", {"standard": Attention})


class Block(nnx.Module):
  def __init__(self, cfg: ModelConfig, layer: int, norm: NormFn, mlp: MlpBuilder, init_scale: float, *,
               rngs: nnx.Rngs):
    attention = ATTENTION_VARIANTS.lookup(cfg.attention)
    self.attn = attention(cfg, layer, norm, POSENC_VARIANTS.lookup(cfg.posenc), init_scale, rngs)
    self.mlp = mlp(cfg.d_model, cfg.mlp_hidden, init_scale, rngs)
    self.norm = norm

  def __call__(self, x_BxTxD: jax.Array, ve_BxTxGxK: jax.Array | None, window: int) -> jax.Array:
    x_BxTxD = x_BxTxD + self.attn(self.norm(x_BxTxD), ve_BxTxGxK, window)
    return x_BxTxD + self.mlp(self.norm(x_BxTxD))


# ---------------------------------------------------------------------------------------------------------------
# The GPT.

class GPT(nnx.Module):
  """idx_BxT (int) -> logits_BxTxV (fp32). `dtype` is the compute dtype (bf16 on GPU); params stay fp32.

  The chosen norm variant replaces every `norm` of autoresearch's model: pre-block, pre-attention/MLP, QK-norm
  and the final norm.
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32):
    cfg.validate()
    norm = NORM_VARIANTS.lookup(cfg.norm)
    mlp = MLP_VARIANTS.lookup(cfg.mlp)
    init_scale = cfg.matrix_init_scale * math.sqrt(3) / math.sqrt(cfg.d_model)
    kv_dim = cfg.n_kv * cfg.head_dim
    self.cfg = cfg
    self.dtype = jnp.dtype(dtype)
    self.norm = norm
    self.wte = _normal(rngs, (cfg.vocab_size, cfg.d_model), cfg.wte_init_std)
    self.blocks = nnx.List([Block(cfg, i, norm, mlp, init_scale, rngs=rngs) for i in range(cfg.depth)])
    self.value_embeds = nnx.Dict({
        str(i): _uniform(rngs, (cfg.vocab_size, kv_dim), init_scale) for i in range(cfg.depth) if cfg.has_ve(i)})
    self.lm_head = _normal(rngs, (cfg.d_model, cfg.vocab_size), cfg.lm_head_init_std)
    self.resid_lambdas = nnx.Param(jnp.full((cfg.depth,), cfg.resid_lambda_init, jnp.float32))
    self.x0_lambdas = nnx.Param(jnp.full((cfg.depth,), cfg.x0_lambda_init, jnp.float32))

  def __call__(self, idx_BxT: jax.Array) -> jax.Array:
    if idx_BxT.ndim != 2 or not jnp.issubdtype(idx_BxT.dtype, jnp.integer):
      raise ValueError(f"idx must be an integer array of shape (batch, time), got {idx_BxT.dtype}{idx_BxT.shape}")
    cfg, dt = self.cfg, self.dtype
    b, t = idx_BxT.shape
    x_BxTxD = self.norm(jnp.take(self.wte[...], idx_BxT, axis=0).astype(dt))
    x0_BxTxD = x_BxTxD
    resid_lambdas, x0_lambdas = self.resid_lambdas[...].astype(dt), self.x0_lambdas[...].astype(dt)
    for i, (block, window) in enumerate(zip(self.blocks, cfg.window_sizes())):
      x_BxTxD = resid_lambdas[i] * x_BxTxD + x0_lambdas[i] * x0_BxTxD
      ve_BxTxGxK = None
      if cfg.has_ve(i):
        ve_BxTxGxK = jnp.take(self.value_embeds[str(i)][...], idx_BxT, axis=0).astype(dt)
        ve_BxTxGxK = ve_BxTxGxK.reshape(b, t, cfg.n_kv, cfg.head_dim)
      x_BxTxD = block(x_BxTxD, ve_BxTxGxK, window)
    # fp32 output straight from the (bf16) matmul: no bf16 rounding of the logits before the softcap/loss
    logits_BxTxV = dense(self.norm(x_BxTxD), self.lm_head, out_dtype=jnp.float32)
    if cfg.softcap > 0:
      logits_BxTxV = cfg.softcap * jnp.tanh(logits_BxTxV / cfg.softcap)
    return logits_BxTxV


# ---------------------------------------------------------------------------------------------------------------
# Accounting and loss.

def num_params(model: nnx.Module) -> int:
  """Number of scalars in all nnx.Params of `model` (works on abstract models from nnx.eval_shape too)."""
  return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def flops_per_token(cfg: ModelConfig) -> float:
  """Training FLOPs per token (forward + backward), autoresearch's estimate.

    6 * (params in blocks + lm_head)  +  sum over layers of 12 * n_head * head_dim * min(window_i, sequence_len)

  Embedding lookups (wte, value_embeds) and the per-layer scalars cost no matmul FLOPs and are excluded. The
  attention term counts each query against its full (window-clipped) context, like autoresearch, not the causal
  average.
  """
  model = nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0)))
  matmul_params = num_params(model.blocks) + math.prod(model.lm_head.shape)
  attn = sum(12 * cfg.n_head * cfg.head_dim * min(w, cfg.sequence_len) for w in cfg.window_sizes())
  return float(6 * matmul_params + attn)


def per_token_loss(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
  """Cross-entropy in nats per position, fp32. Targets of -1 (autoresearch's ignore_index) give 0."""
  if logits_BxTxV.shape[:-1] != targets_BxT.shape:
    raise ValueError(f"targets shape {targets_BxT.shape} must equal logits shape without the vocab axis "
                     f"{logits_BxTxV.shape[:-1]}")
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
  valid_BxT = targets_BxT >= 0
  safe_BxT = jnp.where(valid_BxT, targets_BxT, 0)
  nll_BxT = -jnp.take_along_axis(logp_BxTxV, safe_BxT[..., None], axis=-1)[..., 0]
  return jnp.where(valid_BxT, nll_BxT, 0.0)
