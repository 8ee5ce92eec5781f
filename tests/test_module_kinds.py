"""Every module kind is one registration: it becomes a legal edit, its size model feeds the caps, and it trains."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from arrl.edits import SwapVariant
from arrl.nanochat_space import (KINDS, AttentionSize, estimate_params, nanochat_space, register_variant,
                                 to_program)
from conftest import TINY_PRESET
from nanochat_jax import model as nc_model
from nanochat_jax.config import ScheduleConfig
from nanochat_jax.optimizer import scale_by_scheduled_lr
from nanochat_jax.train import train


class GatedAttention(nc_model.Attention):
  """Attention with a sigmoid output gate from the block input (one more d x d matrix)."""

  def __init__(self, cfg, layer, norm, posenc, init_scale, rngs):
    super().__init__(cfg, layer, norm, posenc, init_scale, rngs)
    self.c_gate = nnx.Param(jnp.zeros((cfg.d_model, cfg.d_model), jnp.float32))

  def __call__(self, x_BxTxD, ve_BxTxGxK, window):
    gate_BxTxD = 2 * jax.nn.sigmoid(x_BxTxD @ self.c_gate[...].astype(x_BxTxD.dtype))
    return super().__call__(x_BxTxD, ve_BxTxGxK, window) * gate_BxTxD


@dataclasses.dataclass(frozen=True)
class GatedAttentionSize(AttentionSize):
  def params(self, cfg):
    return super().params(cfg) + cfg.d_model ** 2


def no_posenc(x_BxTxNxK, cfg):
  return x_BxTxNxK  # NoPE: causal masking alone tells positions apart


def adamw_matrices(optim, compute_dtype):
  return optax.chain(optax.scale_by_adam(b1=optim.adam_beta1, b2=optim.adam_beta2, eps=optim.adam_eps),
                     scale_by_scheduled_lr(0.1 * optim.matrix_lr))


def cosine(s: ScheduleConfig, progress: float) -> float:
  return s.final_lr_frac + (1 - s.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))


ALTERNATIVES = {"attention": ("gated", GatedAttention, GatedAttentionSize()), "posenc": ("none", no_posenc, None),
                "matrix_optimizer": ("adamw", adamw_matrices, None), "lr_schedule": ("cosine", cosine, None)}


def test_one_registration_per_kind_makes_a_legal_trainable_variant(tiny_data, fresh_registries):
  for kind, (name, builder, size) in ALTERNATIVES.items():
    register_variant(kind, name, builder, size=size)
  space = nanochat_space(TINY_PRESET)
  tree = space.default()
  edits = [SwapVariant(f"{KINDS[kind].section}.{kind}", name) for kind, (name, _, _) in ALTERNATIVES.items()]
  legal = space.legal_edits(tree)
  assert all(e in legal for e in edits)
  for e in edits:
    tree = space.apply(tree, e)
  program = to_program(tree)
  assert (program.model.attention, program.model.posenc, program.optim.matrix_optimizer,
          program.schedule.lr_schedule) == ("gated", "none", "adamw", "cosine")
  model = nnx.eval_shape(lambda: nc_model.GPT(program.model, rngs=nnx.Rngs(0)))
  assert nc_model.num_params(model) == estimate_params(program.model)  # the size model counts the gate
  assert program.schedule.lr_multiplier(0.5) == pytest.approx(0.5)
  res = train(program, TINY_PRESET, tiny_data, budget_s=1.0, log=lambda s: None)
  assert res.status == "ok" and res.val_bpb > 0


def test_registration_errors_and_scoping(fresh_registries):
  with pytest.raises(ValueError, match="unknown module kind 'head'"):
    register_variant("head", "x", no_posenc)
  with pytest.raises(ValueError, match="fields must be"):
    register_variant("posenc", "x", no_posenc, fields={"mult": None})
  with pytest.raises(ValueError, match="takes no size model"):
    register_variant("posenc", "x", no_posenc, size=AttentionSize())
  register_variant("posenc", "none", no_posenc)
  register_variant("posenc", "none", no_posenc)  # the same again: a no-op
  with pytest.raises(ValueError, match="different implementation"):
    register_variant("posenc", "none", cosine)


def test_scoped_registries_forget_their_registrations():
  from arrl.nanochat_space import scoped_registries
  with scoped_registries():
    register_variant("posenc", "none", no_posenc)
    assert "none" in nanochat_space(TINY_PRESET).grammar.variants("posenc")
  assert "none" not in nc_model.POSENC_VARIANTS
  assert list(nanochat_space(TINY_PRESET).grammar.variants("posenc")) == ["rope"]
