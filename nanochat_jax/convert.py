"""Interop with autoresearch's PyTorch GPT: its state_dict names and layouts <-> our NNX parameters.

torch.nn.Linear stores weights (out, in) while we store (in, out), so every Linear weight is transposed;
embeddings (wte, value_embeds) and the per-layer scalars share the layout. Only the default variants
(relu2 MLP, rmsnorm, standard attention, rope) exist in autoresearch, so only they have a mapping.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nanochat_jax.config import ModelConfig
from nanochat_jax.model import GPT

Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class _Entry:
  torch_key: str
  path: Path        # path of the nnx.Param inside GPT
  transpose: bool   # torch Linear (out, in) vs our (in, out)


_AUTORESEARCH_MODULES = {"mlp": "relu2", "norm": "rmsnorm", "attention": "standard", "posenc": "rope"}


def _layout(cfg: ModelConfig) -> list[_Entry]:
  modules = {"mlp": cfg.mlp, "norm": cfg.norm, "attention": cfg.attention, "posenc": cfg.posenc}
  if modules != _AUTORESEARCH_MODULES:
    raise ValueError(f"torch interop supports only autoresearch's modules {_AUTORESEARCH_MODULES}, got {modules}")
  entries = [
      _Entry("transformer.wte.weight", ("wte",), False),
      _Entry("lm_head.weight", ("lm_head",), True),
      _Entry("resid_lambdas", ("resid_lambdas",), False),
      _Entry("x0_lambdas", ("x0_lambdas",), False),
  ]
  for i in range(cfg.depth):
    h = f"transformer.h.{i}"
    names = ["attn.c_q", "attn.c_k", "attn.c_v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    if cfg.has_ve(i):
      names.append("attn.ve_gate")
      entries.append(_Entry(f"value_embeds.{i}.weight", ("value_embeds", str(i)), False))
    entries += [_Entry(f"{h}.{n}.weight", ("blocks", i, *n.split(".")), True) for n in names]
  return entries


def _check_same_paths(entries: list[_Entry], params: Mapping[Path, object]) -> None:
  """Guards against the model and this mapping drifting apart."""
  mapped = {e.path for e in entries}
  if mapped != set(params):
    raise RuntimeError(f"model/torch mapping mismatch: unmapped params {sorted(set(params) - mapped)}, "
                       f"mapped but absent {sorted(mapped - set(params))}")


def _flat_params(model: nnx.Module) -> dict[Path, nnx.Variable]:
  return dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))


def to_torch_state_dict(model: GPT) -> dict[str, np.ndarray]:
  """fp32 NumPy arrays under autoresearch's state_dict names and layouts."""
  entries = _layout(model.cfg)
  params = _flat_params(model)
  _check_same_paths(entries, params)
  out = {}
  for e in entries:
    arr = np.asarray(params[e.path][...], dtype=np.float32)
    out[e.torch_key] = np.ascontiguousarray(arr.T) if e.transpose else arr
  return out


def from_torch_state_dict(state_dict: Mapping[str, np.ndarray], cfg: ModelConfig,
                          dtype: jnp.dtype = jnp.float32) -> GPT:
  """Builds a GPT whose fp32 params are the given autoresearch weights (any float dtype NumPy can cast)."""
  entries = _layout(cfg)
  abstract = nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0), dtype=dtype))  # shapes only, no random init
  graphdef, state = nnx.split(abstract)
  params = dict(nnx.to_flat_state(state))
  _check_same_paths(entries, params)

  expected = {e.torch_key: e for e in entries}
  problems = []
  missing = sorted(set(expected) - set(state_dict))
  unexpected = sorted(set(state_dict) - set(expected))
  if missing:
    problems.append(f"missing keys: {', '.join(missing)}")
  if unexpected:
    problems.append(f"unexpected keys: {', '.join(unexpected)}")
  arrays = {}
  for key, e in expected.items():
    if key not in state_dict:
      continue
    arr = np.asarray(state_dict[key], dtype=np.float32)
    shape = tuple(params[e.path].shape)
    want = shape[::-1] if e.transpose else shape
    if arr.shape != want:
      problems.append(f"{key}: shape {arr.shape}, expected {want}")
    arrays[e.path] = arr.T if e.transpose else arr
  if problems:
    raise ValueError("state_dict does not match the model config; " + "; ".join(problems))

  filled = [(path, var.replace(jnp.asarray(arrays[path]))) for path, var in params.items()]
  return nnx.merge(graphdef, nnx.from_flat_state(filled))


def load_torch_file(path: str) -> dict[str, np.ndarray]:
  """Reads a torch checkpoint (a state_dict) into fp32 NumPy arrays; needs torch installed.

  Strips torch.compile's `_orig_mod.` prefix so compiled-model checkpoints load too.
  """
  try:
    import torch
  except ImportError as err:
    raise ImportError("load_torch_file needs PyTorch; install torch or pass a dict of NumPy arrays") from err
  state = torch.load(path, map_location="cpu", weights_only=True)
  return {k.removeprefix("_orig_mod."): v.detach().float().numpy() for k, v in state.items()}
