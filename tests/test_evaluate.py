import math

import jax.numpy as jnp
import numpy as np
import pytest

from nanochat_jax.evaluate import bits_per_byte, bpb_sums, evaluate_bpb


def test_bpb_hand_computed():
  # token bytes: id0 is a special (0 bytes), id1 has 1 byte, id2 has 3 bytes
  token_bytes = jnp.array([0, 1, 3], jnp.int32)
  nats = jnp.array([[1.0, 2.0, 4.0]])
  targets = jnp.array([[1, 0, 2]])          # the special target is neither scored nor counted
  total_nats, total_bytes = bpb_sums(nats, targets, token_bytes)
  assert float(total_nats) == pytest.approx(5.0)
  assert float(total_bytes) == pytest.approx(4.0)
  assert bits_per_byte(5.0, 4.0) == pytest.approx(5.0 / (math.log(2) * 4.0))


def test_evaluate_bpb_sums_over_batches_deterministically():
  token_bytes = jnp.array([0, 2, 2], jnp.int32)
  batches = iter([np.array([[0, 1, 2]]), np.array([[0, 2, 0]])] * 2)

  def eval_step(rows):
    targets = jnp.asarray(rows)[:, 1:]
    return bpb_sums(jnp.ones(targets.shape), targets, token_bytes)

  # 2 batches: scored targets (1,2) and (2): 3 nats over 6 bytes
  assert evaluate_bpb(eval_step, batches, 2) == pytest.approx(3 / (math.log(2) * 6))
  assert evaluate_bpb(eval_step, batches, 2) == pytest.approx(3 / (math.log(2) * 6))


def test_no_bytes_is_an_error():
  with pytest.raises(ValueError, match="no validation bytes"):
    bits_per_byte(1.0, 0.0)
