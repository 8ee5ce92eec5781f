"""Tests for nanochat_jax.model: semantics of the GPT pieces on tiny CPU configs."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanochat_jax import model as M
from nanochat_jax.config import ModelConfig

# d_model 64, 4 heads of 16, sequence 16 -> "S" layers see 8 keys back.
TINY = ModelConfig(vocab_size=64, sequence_len=16, depth=2, aspect_ratio=32, head_dim=16, window_pattern="SL",
                   ve_gate_channels=8)


def tiny(**changes) -> ModelConfig:
  """TINY with changes, keeping d_model = 64 whatever the depth."""
  cfg = dataclasses.replace(TINY, **changes)
  return dataclasses.replace(cfg, aspect_ratio=64 // cfg.depth)


@nnx.jit
def forward(model: M.GPT, idx: jax.Array) -> jax.Array:
  return model(idx)  # jitted: eager op-by-op dispatch compiles every op and is far slower on CPU


def fill(abstract: nnx.Module, values) -> nnx.Module:
  """Concrete copy of an nnx.eval_shape module whose param at `path` is values(path, shape)."""
  graphdef, state = nnx.split(abstract)
  flat = [(p, v.replace(jnp.asarray(values(p, v.shape), jnp.float32))) for p, v in nnx.to_flat_state(state)]
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def gaussian(seed: int):
  """N(0, 1/fan_in) for every param, zero-init ones included, so every path carries signal (NumPy: no compiles)."""
  rng = np.random.default_rng(seed)
  return lambda path, shape: rng.standard_normal(shape) / math.sqrt(shape[0])


def random_model(cfg: ModelConfig = TINY, seed: int = 0, dtype=jnp.float32) -> M.GPT:
  """Same cfg structure and seed -> same weights (params are filled in sorted path order)."""
  return fill(nnx.eval_shape(lambda: M.GPT(cfg, rngs=nnx.Rngs(0), dtype=dtype)), gaussian(seed))


def params(model: nnx.Module) -> dict:
  return {p: v[...] for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def tokens(cfg: ModelConfig = TINY, batch: int = 2, seed: int = 0) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).integers(0, cfg.vocab_size, (batch, cfg.sequence_len)), jnp.int32)


def normal(seed: int, *shape: int) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def dense_attention(q, k, v, window):
  """Reference: explicit (i - window <= j <= i) mask, GQA by repeating kv heads."""
  h, t, hd = q.shape[2], q.shape[1], q.shape[3]
  k, v = (jnp.repeat(a, h // a.shape[2], axis=2) for a in (k, v))
  s = jnp.einsum("bthk,bshk->bhts", q, k) / math.sqrt(hd)
  i, j = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
  s = jnp.where((j <= i) & (j >= i - window), s, -jnp.inf)
  return jnp.einsum("bhts,bshk->bthk", jax.nn.softmax(s, axis=-1), v)


def test_causality():
  model = random_model()
  idx = tokens()
  t = 7
  changed = idx.at[:, t].set((idx[:, t] + 1) % TINY.vocab_size)
  a, b = forward(model, idx), forward(model, changed)
  np.testing.assert_array_equal(a[:, :t], b[:, :t])
  assert np.all(np.abs(a[:, t:] - b[:, t:]).max(axis=-1) > 1e-6)  # every later position does see token t


@pytest.mark.parametrize("window", [0, 3, 8, 15, 16, 40])
@pytest.mark.parametrize("n_kv", [4, 2])
def test_attention_window_matches_dense_mask(window, n_kv):
  q, k, v = normal(window, 2, 16, 4, 8), normal(1, 2, 16, n_kv, 8), normal(2, 2, 16, n_kv, 8)
  np.testing.assert_allclose(M.causal_attention(q, k, v, window), dense_attention(q, k, v, window), atol=1e-5)


def test_attention_implementation_choice(monkeypatch):
  assert M.attention_implementation(jnp.bfloat16, 128) == "xla"  # CPU
  monkeypatch.setattr(M.jax, "default_backend", lambda: "gpu")
  assert M.attention_implementation(jnp.bfloat16, 128) == "cudnn"
  assert M.attention_implementation(jnp.float16, 64) == "cudnn"
  assert M.attention_implementation(jnp.float32, 128) == "xla"  # cuDNN flash attention is half precision only
  assert M.attention_implementation(jnp.bfloat16, 12) == "xla"  # head_dim must be a multiple of 8
  assert M.attention_implementation(jnp.bfloat16, 192) == "xla"


def test_model_sliding_window_matches_dense_reference(monkeypatch):
  model = random_model()
  idx = tokens()
  logits = forward(model, idx)
  monkeypatch.setattr(M, "causal_attention", dense_attention)
  np.testing.assert_allclose(logits, nnx.jit(lambda m, x: m(x))(model, idx), atol=1e-5)  # fresh trace
  # the window is really in effect: full context with the same weights differs once windows of 8 bind (t >= 9)
  full_logits = forward(random_model(tiny(window_pattern="L")), idx)
  assert np.abs(full_logits - logits)[:, 9:].max() > 1e-4
  np.testing.assert_allclose(full_logits[:, :9], logits[:, :9], atol=1e-5)


def repeat_heads(w, groups: int, head_dim: int):
  """(rows, Hkv*hd) -> (rows, H*hd) by repeating each kv head `groups` times (torch repeat_interleave)."""
  heads = w.reshape(w.shape[0], -1, head_dim)
  return jnp.repeat(heads, groups, axis=1).reshape(w.shape[0], -1)


def as_mha(path, w):
  if path[-1] in ("c_k", "c_v") or path[0] == "value_embeds":
    return repeat_heads(w, 2, TINY.head_dim)
  return jnp.repeat(w, 2, axis=1) if path[-1] == "ve_gate" else w


def test_gqa_equals_mha_with_repeated_kv():
  gqa = random_model(tiny(n_kv_head=2))
  gqa_params = params(gqa)
  mha = fill(nnx.eval_shape(lambda: M.GPT(TINY, rngs=nnx.Rngs(0))), lambda p, _: as_mha(p, gqa_params[p]))
  idx = tokens()
  np.testing.assert_allclose(forward(gqa, idx), forward(mha, idx), atol=1e-5)


def single_position_attention(gate_w):
  """Attention with T=1 (softmax weight exactly 1), c_v = 0 and c_proj = I: output_BxTxD = gate * ve."""
  cfg = tiny(depth=1)
  special = {"c_v": np.zeros((64, 64)), "c_proj": np.eye(64), "ve_gate": gate_w}
  rand = gaussian(0)
  attn = fill(nnx.eval_shape(lambda: M.Attention(cfg, 0, M.rms_norm, M.rope, 0.1, nnx.Rngs(0))),
              lambda p, shape: special.get(p[-1], rand(p, shape)))
  x, ve = normal(1, 3, 1, cfg.d_model), normal(2, 3, 1, cfg.n_kv, cfg.head_dim)
  y = nnx.jit(lambda a, x, ve: a(x, ve, cfg.sequence_len))(attn, x, ve).reshape(ve.shape)
  return x, ve, y


def test_value_embedding_gate():
  _, ve, y = single_position_attention(np.zeros((8, 4)))
  np.testing.assert_array_equal(y, ve)  # 2 * sigmoid(0) == 1.0 exactly
  gate_w = np.random.default_rng(3).standard_normal((8, 4))
  x, ve, y = single_position_attention(gate_w)
  expected = 2 / (1 + np.exp(-(np.asarray(x[..., :8]) @ gate_w)))[..., None] * np.asarray(ve)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_ve_layers_follow_config():
  cfg = tiny(depth=3)
  model = nnx.eval_shape(lambda: M.GPT(cfg, rngs=nnx.Rngs(0)))
  assert sorted(model.value_embeds.keys()) == ["0", "2"]
  assert [b.attn.ve_gate is not None for b in model.blocks] == [True, False, True]
  last = nnx.eval_shape(lambda: M.GPT(dataclasses.replace(cfg, ve_pattern="last"), rngs=nnx.Rngs(0)))
  assert sorted(last.value_embeds.keys()) == ["2"] and last.blocks[1].attn.ve_gate is None


def test_init_statistics():
  cfg = ModelConfig(vocab_size=512, sequence_len=16, depth=2, aspect_ratio=64, head_dim=32, matrix_init_scale=1.5,
                    x0_lambda_init=0.25, resid_lambda_init=0.75)
  model = nnx.jit(lambda: M.GPT(cfg, rngs=nnx.Rngs(0)))()  # one compile beats eager op-by-op init on CPU
  d = cfg.d_model
  s = 1.5 * math.sqrt(3) / math.sqrt(d)
  assert model.wte.shape == (512, d) and model.lm_head.shape == (d, 512)
  assert abs(float(jnp.std(model.wte[...])) - 1.0) < 0.02
  assert abs(float(jnp.std(model.lm_head[...])) - 0.001) < 0.00003
  uniform = [model.value_embeds["1"][...]]
  for block in model.blocks:
    uniform += [block.attn.c_q[...], block.attn.c_k[...], block.attn.c_v[...], block.mlp.c_fc[...]]
    np.testing.assert_array_equal(block.attn.c_proj[...], 0.0)
    np.testing.assert_array_equal(block.mlp.c_proj[...], 0.0)
  np.testing.assert_array_equal(model.blocks[1].attn.ve_gate[...], 0.0)
  for w in uniform:
    assert float(jnp.abs(w).max()) <= s and float(jnp.abs(w).max()) > 0.95 * s
    assert abs(float(jnp.std(w)) - s / math.sqrt(3)) < 0.03 * s
  np.testing.assert_array_equal(model.resid_lambdas[...], [0.75, 0.75])
  np.testing.assert_array_equal(model.x0_lambdas[...], [0.25, 0.25])
  assert all(p.dtype == jnp.float32 for p in params(model).values())


def test_rope_hand_case():
  cos, sin = M.rope_tables(3, 4, 100.0)  # inv_freq = [1, 100**-0.5] = [1, 0.1]
  np.testing.assert_allclose(cos[2], [math.cos(2), math.cos(0.2)], rtol=1e-6)
  x = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4) * jnp.ones((1, 3, 1, 1))
  y = M.apply_rope(x, cos, sin)
  np.testing.assert_allclose(y[0, 0, 0], [1, 2, 3, 4], rtol=1e-6)  # position 0 is the identity
  c1, s1, c2, s2 = math.cos(1), math.sin(1), math.cos(0.1), math.sin(0.1)
  np.testing.assert_allclose(y[0, 1, 0], [1 * c1 + 3 * s1, 2 * c2 + 4 * s2, -1 * s1 + 3 * c1, -2 * s2 + 4 * c2],
                             rtol=1e-6)


def test_norm_variants():
  x = normal(0, 3, 5, 32) * 3 + 1
  rms = M.NORM_VARIANTS["rmsnorm"](x)
  np.testing.assert_allclose(jnp.sqrt(jnp.mean(rms ** 2, -1)), 1.0, rtol=1e-5)
  np.testing.assert_allclose(rms * jnp.sqrt(jnp.mean(x ** 2, -1, keepdims=True)), x, rtol=1e-4)
  ln = M.NORM_VARIANTS["layernorm"](x)
  np.testing.assert_allclose(jnp.mean(ln, -1), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(ln, -1), 1.0, rtol=1e-5)
  assert M.rms_norm(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_mlp_variant_formulas():
  x = normal(0, 2, 3, 16)
  expected = {
      "relu2": lambda m: jnp.maximum(x @ m.c_fc[...], 0) ** 2 @ m.c_proj[...],
      "gelu": lambda m: jax.nn.gelu(x @ m.c_fc[...], approximate=False) @ m.c_proj[...],
      "swiglu": lambda m: (jax.nn.silu(x @ m.c_gate[...]) * (x @ m.c_fc[...])) @ m.c_proj[...],
  }
  for name, formula in expected.items():
    build = lambda: M.MLP_VARIANTS[name](16, 40, 0.3, nnx.Rngs(0))  # noqa: E731
    np.testing.assert_array_equal(build()(x), 0.0)  # zero-init output projection
    mlp = fill(nnx.eval_shape(build), gaussian(1))
    np.testing.assert_allclose(mlp(x), formula(mlp), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mlp,norm,ve", [("swiglu", "rmsnorm", "all"), ("gelu", "layernorm", "none"),
                                         ("relu2", "layernorm", "last")])
def test_variants_build_and_run(mlp, norm, ve):
  cfg = tiny(mlp=mlp, norm=norm, ve_pattern=ve, depth=1)
  logits = forward(random_model(cfg), tokens(cfg))
  assert logits.shape == (2, 16, 64) and bool(jnp.all(jnp.isfinite(logits)))
  assert logits.std() > 1e-3


def loud_model(cfg: ModelConfig) -> M.GPT:
  """random_model with lm_head scaled up 100x: raw logits far beyond the softcap."""
  rand = gaussian(0)
  return fill(nnx.eval_shape(lambda: M.GPT(cfg, rngs=nnx.Rngs(0))),
              lambda p, shape: rand(p, shape) * (100 if p == ("lm_head",) else 1))


def test_softcap_bounds_logits():
  idx = tokens()
  capped = forward(loud_model(TINY), idx)
  assert float(jnp.abs(capped).max()) <= TINY.softcap
  assert float(jnp.abs(capped).max()) > 0.9 * TINY.softcap
  raw = forward(loud_model(tiny(softcap=0.0)), idx)
  assert float(jnp.abs(raw).max()) > 2 * TINY.softcap
  np.testing.assert_allclose(capped, TINY.softcap * jnp.tanh(raw / TINY.softcap), atol=1e-4)


class LinearMLP(nnx.Module):
  def __init__(self, d_model, hidden, init_scale, rngs):
    self.c_fc = nnx.Param(jnp.ones((d_model, d_model)) * init_scale)

  def __call__(self, x):
    return x @ self.c_fc[...].astype(x.dtype)


def test_register_mlp():
  with M.MLP_VARIANTS.scoped():
    with pytest.raises(ValueError, match="unknown mlp 'linear'; known: gelu, relu2, swiglu"):
      M.GPT(tiny(mlp="linear"), rngs=nnx.Rngs(0))
    M.MLP_VARIANTS.register("linear", LinearMLP)
    M.MLP_VARIANTS.register("linear", LinearMLP)  # same object again: a no-op
    cfg = tiny(mlp="linear", depth=1)
    model = random_model(cfg)
    assert isinstance(model.blocks[0].mlp, LinearMLP) and model.blocks[0].mlp.c_fc.shape == (64, 64)
    assert forward(model, tokens(cfg)).shape == (2, 16, 64)
    with pytest.raises(ValueError, match="already registered"):
      M.MLP_VARIANTS.register("linear", M.SwiGLU)
    with pytest.raises(ValueError, match="non-empty string"):
      M.MLP_VARIANTS.register("", LinearMLP)
  assert "linear" not in M.MLP_VARIANTS  # the scope undid the registration


def test_register_norm():
  with M.NORM_VARIANTS.scoped():
    with pytest.raises(ValueError, match="unknown norm 'identity'"):
      M.GPT(tiny(norm="identity"), rngs=nnx.Rngs(0))
    M.NORM_VARIANTS.register("identity", lambda x: x)
    cfg = tiny(norm="identity", depth=1)
    assert forward(random_model(cfg), tokens(cfg)).shape == (2, 16, 64)
    with pytest.raises(ValueError, match="must be callable"):
      M.NORM_VARIANTS.register("bad", 3)
    M.NORM_VARIANTS.unregister("identity")
    with pytest.raises(ValueError, match="unknown norm 'identity'"):
      M.NORM_VARIANTS.unregister("identity")


def test_bfloat16_compute_keeps_fp32_params_and_logits():
  bf16 = random_model(dtype=jnp.bfloat16)
  idx = tokens()
  logits = forward(bf16, idx)
  assert logits.dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in params(bf16).values())
  assert float(jnp.abs(logits - forward(random_model(), idx)).max()) < 0.1  # bf16 rounding only


def test_every_param_gets_a_gradient():
  cfg = tiny(depth=1)  # one block already holds every kind of param
  model, idx = random_model(cfg), tokens(cfg)
  loss = lambda m: M.per_token_loss(m(idx), jnp.roll(idx, -1, axis=1)).mean()  # noqa: E731
  value, grads = nnx.jit(nnx.value_and_grad(loss))(model)
  assert math.isfinite(float(value))
  for path, g in params(grads).items():
    assert g.dtype == jnp.float32 and float(jnp.abs(g).max()) > 0, path


def test_param_count_and_flops():
  cfg = tiny(n_kv_head=2)
  d, kv, hidden, v = 64, 32, 256, 64
  block = d * d + 2 * d * kv + d * d + 2 * d * hidden
  blocks = 2 * block + 8 * 2  # ve_gate only on layer 1 ("alternate", last included)
  model = nnx.eval_shape(lambda: M.GPT(cfg, rngs=nnx.Rngs(0)))
  assert M.num_params(model) == blocks + 2 * v * d + v * kv + 2 * 2
  attn = 12 * 4 * 16 * (8 + 16)  # layer 0 window 8, layer 1 full 16
  assert M.flops_per_token(cfg) == 6 * (blocks + d * v) + attn


def test_per_token_loss():
  logits = normal(0, 2, 3, 5)
  targets = jnp.array([[0, 4, 2], [1, -1, 3]])
  loss = M.per_token_loss(logits.astype(jnp.bfloat16), targets)
  assert loss.dtype == jnp.float32 and loss[1, 1] == 0.0
  logp = jax.nn.log_softmax(logits.astype(jnp.bfloat16).astype(jnp.float32), -1)
  np.testing.assert_allclose(loss[0, 1], -logp[0, 1, 4], rtol=1e-6)
  np.testing.assert_allclose(loss[1, 2], -logp[1, 2, 3], rtol=1e-6)
  with pytest.raises(ValueError, match="targets shape"):
    M.per_token_loss(logits, targets[:, :2])


def test_bad_inputs():
  model = random_model()
  with pytest.raises(ValueError, match="integer array of shape"):
    model(jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="integer array of shape"):
    model(jnp.zeros((4,), jnp.int32))
  with pytest.raises(ValueError, match="n_kv_head"):
    M.GPT(tiny(n_kv_head=3), rngs=nnx.Rngs(0))
