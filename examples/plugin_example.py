"""An arrl plugin: a SiLU MLP and a parameter-free Dynamic-Tanh "norm" as new variants of the nanochat space.

    python -m arrl.main --plugin examples/plugin_example.py --initial examples/plugin_initial.json

A plugin is a module that registers variants when imported; the loop and every trial worker import it (see
arrl.plugins), so trials of these variants train like built-in ones. plugin_initial.json starts the search
(and its noise baselines) from a program that uses both.
"""
import functools

import jax
import jax.numpy as jnp

from arrl.grammar import Choice
from arrl.nanochat_space import register_mlp_variant, register_variant
from nanochat_jax.model import PointwiseMLP


def dynamic_tanh(x: jax.Array) -> jax.Array:
  """tanh(x / 2): DyT (Zhu et al. 2025, "Transformers without Normalization") with its scale fixed at its init."""
  return jnp.tanh(0.5 * x.astype(jnp.float32)).astype(x.dtype)


register_mlp_variant("silu", functools.partial(PointwiseMLP, activation=jax.nn.silu),
                     fields={"mult": Choice((2.0, 3.0, 4.0, 6.0), default=4.0, ordinal=True)})
register_variant("norm", "dyt", dynamic_tanh)
