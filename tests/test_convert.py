"""Tests for nanochat_jax.convert: torch state_dict round trips and a NumPy reference of autoresearch's GPT."""
import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanochat_jax.config import ModelConfig
from nanochat_jax.convert import from_torch_state_dict, to_torch_state_dict
from nanochat_jax.model import GPT

# depth 3, "SSL": d_model 64 = 4 heads of 16, sequence 32 -> S layers see 16 keys back; VE on layers 0 and 2.
CFG = ModelConfig(vocab_size=64, sequence_len=32, depth=3, aspect_ratio=21, head_dim=16, window_pattern="SSL")


def torch_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """autoresearch's state_dict layout, written out independently of convert.py (Linear weights are (out, in))."""
  d, v, kv = cfg.d_model, cfg.vocab_size, cfg.n_kv * cfg.head_dim
  hidden = 4 * d
  shapes = {"transformer.wte.weight": (v, d), "lm_head.weight": (v, d),
            "resid_lambdas": (cfg.depth,), "x0_lambdas": (cfg.depth,)}
  for i in range(cfg.depth):
    h = f"transformer.h.{i}"
    shapes |= {f"{h}.attn.c_q.weight": (d, d), f"{h}.attn.c_k.weight": (kv, d), f"{h}.attn.c_v.weight": (kv, d),
               f"{h}.attn.c_proj.weight": (d, d), f"{h}.mlp.c_fc.weight": (hidden, d),
               f"{h}.mlp.c_proj.weight": (d, hidden)}
    if i % 2 == (cfg.depth - 1) % 2:
      shapes |= {f"value_embeds.{i}.weight": (v, kv), f"{h}.attn.ve_gate.weight": (cfg.n_kv, 32)}
  return shapes


def random_state_dict(cfg: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
  """Every weight random, zero-init ones (c_proj, ve_gate) included; scalars around their usual values."""
  rng = np.random.default_rng(seed)
  sd = {k: (rng.standard_normal(s) / math.sqrt(s[-1])).astype(np.float32) for k, s in torch_shapes(cfg).items()}
  sd["resid_lambdas"] = rng.uniform(0.5, 1.5, cfg.depth).astype(np.float32)
  sd["x0_lambdas"] = rng.uniform(-0.3, 0.3, cfg.depth).astype(np.float32)
  sd["transformer.wte.weight"] *= math.sqrt(cfg.d_model)  # std 1, as initialised
  sd["lm_head.weight"] *= 4  # logits of a few units, so the softcap bends them
  return sd


def reference_forward(sd: dict[str, np.ndarray], cfg: ModelConfig, idx: np.ndarray) -> np.ndarray:
  """autoresearch's GPT.forward, in float64 NumPy over the torch state_dict."""
  sd = {k: v.astype(np.float64) for k, v in sd.items()}
  n_head, n_kv, hd, depth = cfg.n_head, cfg.n_kv, cfg.head_dim, cfg.depth
  b, t = idx.shape

  def norm(x):  # F.rms_norm with torch's default eps = finfo(float32).eps
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.finfo(np.float32).eps)

  def linear(x, key):
    return x @ sd[key].T

  inv_freq = 1.0 / cfg.rope_base ** (np.arange(0, hd, 2) / hd)
  freqs = np.outer(np.arange(t), inv_freq)
  cos, sin = np.cos(freqs)[None, :, None, :], np.sin(freqs)[None, :, None, :]

  def rotary(x):
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    return np.concatenate([x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos], axis=-1)

  x = norm(sd["transformer.wte.weight"][idx])
  x0 = x
  for i in range(depth):
    letter = "L" if i == depth - 1 else cfg.window_pattern[i % len(cfg.window_pattern)]
    window = cfg.sequence_len if letter == "L" else cfg.sequence_len // 2
    x = sd["resid_lambdas"][i] * x + sd["x0_lambdas"][i] * x0
    h, p = norm(x), f"transformer.h.{i}"
    q = linear(h, f"{p}.attn.c_q.weight").reshape(b, t, n_head, hd)
    k = linear(h, f"{p}.attn.c_k.weight").reshape(b, t, n_kv, hd)
    v = linear(h, f"{p}.attn.c_v.weight").reshape(b, t, n_kv, hd)
    if f"value_embeds.{i}.weight" in sd:
      ve = sd[f"value_embeds.{i}.weight"][idx].reshape(b, t, n_kv, hd)
      gate = 2 / (1 + np.exp(-linear(h[..., :32], f"{p}.attn.ve_gate.weight")))
      v = v + gate[..., None] * ve
    q, k = norm(rotary(q)), norm(rotary(k))
    k, v = np.repeat(k, n_head // n_kv, axis=2), np.repeat(v, n_head // n_kv, axis=2)  # repeat_interleave
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
    qi, ki = np.arange(t)[:, None], np.arange(t)[None, :]
    scores = np.where((ki <= qi) & (qi - ki <= window), scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    y = np.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, -1)
    x = x + linear(y, f"{p}.attn.c_proj.weight")
    x = x + linear(np.maximum(linear(norm(x), f"{p}.mlp.c_fc.weight"), 0) ** 2, f"{p}.mlp.c_proj.weight")
  logits = linear(norm(x), "lm_head.weight")
  return 15 * np.tanh(logits / 15)


@pytest.mark.parametrize("n_kv_head", [0, 2])
def test_converted_model_matches_numpy_reference(n_kv_head):
  cfg = dataclasses.replace(CFG, n_kv_head=n_kv_head)
  sd = random_state_dict(cfg)
  idx = np.random.default_rng(1).integers(0, cfg.vocab_size, (2, cfg.sequence_len))
  model = from_torch_state_dict(sd, cfg)
  logits = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(idx, jnp.int32))
  expected = reference_forward(sd, cfg, idx)
  assert np.abs(expected).max() > 5  # the softcap is in play
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_round_trip_is_identity():
  sd = random_state_dict(CFG, seed=3)
  back = to_torch_state_dict(from_torch_state_dict(sd, CFG))
  assert back.keys() == sd.keys()
  for k in sd:
    assert back[k].dtype == np.float32
    np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


def test_export_layout_of_fresh_model():
  model = nnx.jit(lambda: GPT(CFG, rngs=nnx.Rngs(0)))()  # jitted init: one compile instead of many on CPU
  sd = to_torch_state_dict(model)
  assert {k: v.shape for k, v in sd.items()} == torch_shapes(CFG)
  np.testing.assert_array_equal(sd["lm_head.weight"], np.asarray(model.lm_head[...]).T)
  np.testing.assert_array_equal(sd["transformer.h.2.attn.ve_gate.weight"], 0.0)
  model2 = from_torch_state_dict(sd, CFG, dtype=jnp.bfloat16)
  assert model2.dtype == jnp.bfloat16 and model2.wte[...].dtype == jnp.float32
  np.testing.assert_array_equal(model2.blocks[1].attn.c_k[...], model.blocks[1].attn.c_k[...])


def test_bad_state_dicts_name_every_problem():
  sd = random_state_dict(CFG)
  del sd["transformer.h.1.mlp.c_fc.weight"], sd["x0_lambdas"]
  sd["transformer.h.0.attn.c_q.weight"] = sd["transformer.h.0.attn.c_q.weight"][:, :10]
  sd["value_embeds.1.weight"] = np.zeros((64, 64), np.float32)
  with pytest.raises(ValueError) as err:
    from_torch_state_dict(sd, CFG)
  msg = str(err.value)
  for part in ("transformer.h.1.mlp.c_fc.weight", "x0_lambdas", "value_embeds.1.weight",
               "transformer.h.0.attn.c_q.weight: shape (64, 10), expected (64, 64)"):
    assert part in msg


@pytest.mark.parametrize("change", [{"mlp": "swiglu"}, {"norm": "layernorm"}])
def test_variants_without_torch_mapping_are_refused(change):
  cfg = dataclasses.replace(CFG, **change)
  with pytest.raises(ValueError, match="supports only autoresearch's modules"):
    from_torch_state_dict(random_state_dict(CFG), cfg)
  with pytest.raises(ValueError, match="supports only"):
    to_torch_state_dict(nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0))))
