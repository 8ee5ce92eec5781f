"""val-bpb, as autoresearch/nanochat define it.

bits per byte = sum of per-token cross-entropy (nats) over targets whose UTF-8 byte length is > 0,
divided by ln 2 times the sum of those bytes. Special tokens (0 bytes) are neither scored nor counted.
The validation stream, its order and the token count are fixed by the preset, so the number is
deterministic for given weights.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np


def bpb_sums(nats_BxT: jax.Array, targets_BxT: jax.Array, token_bytes_V: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sum of nats over scored targets, sum of their bytes) for one batch."""
  nbytes_BxT = token_bytes_V[targets_BxT]
  scored_BxT = nbytes_BxT > 0
  nats = jnp.sum(jnp.where(scored_BxT, nats_BxT.astype(jnp.float32), 0.0))
  return nats, jnp.sum(nbytes_BxT).astype(jnp.float32)


def bits_per_byte(total_nats: float, total_bytes: float) -> float:
  if total_bytes <= 0:
    raise ValueError("no validation bytes were scored")
  return total_nats / (math.log(2) * total_bytes)


def evaluate_bpb(eval_step: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
                 batches: Iterator[np.ndarray], num_batches: int) -> float:
  """Run `eval_step(rows_BxT1) -> (nats, bytes)` over `num_batches` validation batches.

  Sums are accumulated on the host in float64 so the result does not depend on batch order rounding.
  """
  total_nats = total_bytes = 0.0
  for _ in range(num_batches):
    nats, nbytes = eval_step(next(batches))
    total_nats += float(nats)
    total_bytes += float(nbytes)
  return bits_per_byte(total_nats, total_bytes)
