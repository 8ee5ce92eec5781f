"""The nanochat search space: trees that compile exactly to `nanochat_jax.config.Program`.

Tree layout (paths mirror Program's attributes):
  program:nanochat
    model:default     every ModelConfig field, except
                        window_pattern  a LIST of "S"/"L" (list edits insert/delete/replace layers' windows)
                        mlp             a module whose variant is the MLP kind and whose field `mult` is mlp_mult
                        norm            a module whose variant is the norm kind
    optim:default     every OptimConfig field
    schedule:default  every ScheduleConfig field

A Program field is searchable when `register_knob` gave it a grid; every other field is fixed at the preset's
value (a one-value grid), so the tree always describes the whole Program. Each grid is built around the
preset's default, which is always on the grid and is the default value: the default tree IS `preset.program`.

Extending the space is one call in one place:
  register_knob("optim.adam_eps", [1e-10, 1e-8])                  # a new searchable hyperparameter
  register_mlp_variant("relu", builder, fields={"mult": Choice((2.0, 4.0), default=4.0)})  # a new module
New norms registered with `nanochat_jax.model.register_norm` appear as norm variants by themselves. Spaces
built after a registration see it.

Constraints: `Program.validate` (n_head % n_kv_head, total_batch_tokens % (device_batch_size*sequence_len),
...), and the preset's caps on the estimated parameter count and training memory (see `estimate_memory_gb`).
"""
from __future__ import annotations

import dataclasses
import functools
import pprint
import re
from typing import Callable, Mapping, Sequence, Union

from nanochat_jax import config as nc_config
from nanochat_jax import model as nc_model
from nanochat_jax.config import ModelConfig, OptimConfig, Program, ScheduleConfig
from nanochat_jax.env import PRESETS, Preset

from arrl.grammar import Child, Choice, FieldSpec, Grammar, ListOf, check_name, same
from arrl.space import Space
from arrl.tree import Node, Scalar, digest, diff, flatten

_SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "schedule": ScheduleConfig}
_SAFE_TEXT = re.compile(r"[A-Za-z0-9_.+\-]*")  # strings that may appear in an exported script's docstring
_MODULE_FIELDS = ("model.window_pattern", "model.mlp", "model.mlp_mult", "model.norm")  # not plain grid fields
MAX_LAYER_PATTERN = 8  # longest window_pattern list (it is cycled over the layers)

Grid = Union[Sequence[Scalar], Callable[[Scalar], Sequence[Scalar]]]  # values, or default -> values


# ---------------------------------------------------------------------------------------------------------------
# Ladders around a preset's default value.

def _sig3(x: float) -> float:
  return float(f"{x:.3g}")


def geometric(ratio: float, lo: int, hi: int) -> Callable[[Scalar], list[Scalar]]:
  """default * ratio**k for k in lo..hi: 3 significant digits for floats, rounded (>= 1) for ints."""
  def grid(default: Scalar) -> list[Scalar]:
    if isinstance(default, int):
      return [max(1, round(default * ratio**k)) for k in range(lo, hi + 1)]
    return [_sig3(default * ratio**k) for k in range(lo, hi + 1)]
  return grid


def scaled(*factors: float) -> Callable[[Scalar], list[Scalar]]:
  """default * f for each factor (ints rounded)."""
  def grid(default: Scalar) -> list[Scalar]:
    if isinstance(default, int):
      return [round(default * f) for f in factors]
    return [_sig3(default * f) for f in factors]
  return grid


@dataclasses.dataclass(frozen=True)
class _Knob:
  grid: Grid
  ordinal: bool


_KNOBS: dict[str, _Knob] = {}


def register_knob(attr: str, grid: Grid, ordinal: bool = True) -> None:
  """Makes Program field `attr` ("section.field") searchable over `grid` (values, or default -> values).

  The preset's own value is always added to the grid and is the default. Ordinal grids are kept sorted.
  """
  section, _, name = attr.partition(".")
  if section not in _SECTIONS or name not in {f.name for f in dataclasses.fields(_SECTIONS[section])}:
    raise ValueError(f"{attr!r} is not a Program field; expected 'section.field' with section in "
                     f"{', '.join(_SECTIONS)} (see nanochat_jax.config)")
  if attr in _MODULE_FIELDS:
    raise ValueError(f"{attr!r} is a module/list field of the tree; use register_mlp_variant for MLPs")
  if attr in _KNOBS:
    raise ValueError(f"{attr!r} is already searchable")
  _KNOBS[attr] = _Knob(grid, ordinal)


def _grid_choice(attr: str, default: Scalar) -> Choice:
  knob = _KNOBS.get(attr)
  if knob is None:
    return Choice((default,))
  raw = list(knob.grid(default) if callable(knob.grid) else knob.grid)
  if isinstance(default, float):
    raw = [float(v) for v in raw]  # 0 and 0.0 are one grid point
  elif isinstance(default, int) and not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
    raise ValueError(f"{attr}: an integer field needs an integer grid, got {raw}")
  values: list[Scalar] = []
  for v in raw + [default]:
    if not any(same(v, w) for w in values):
      values.append(v)
  if knob.ordinal:
    values.sort()
  return Choice(tuple(values), default, knob.ordinal)


_LR = geometric(2**0.5, -4, 4)  # x0.25 .. x4 in half-octaves
for _attr, _grid, _ordinal in [
    ("model.depth", geometric(2**0.25, -4, 4), True),
    ("model.aspect_ratio", scaled(0.5, 0.75, 1, 1.25, 1.5, 2), True),
    ("model.head_dim", scaled(0.5, 1, 2), True),
    ("model.n_kv_head", [0, 1, 2, 4, 8], False),  # 0 = one kv head per query head (plain MHA)
    ("model.rope_base", scaled(0.1, 0.5, 1, 2, 5, 10), True),
    ("model.ve_pattern", ["alternate", "all", "last", "none"], False),
    ("model.softcap", [0.0, 10.0, 15.0, 20.0, 30.0, 50.0], False),  # 0 = off
    ("model.resid_lambda_init", [0.5, 0.75, 1.0, 1.25, 1.5], True),
    ("model.x0_lambda_init", [0.0, 0.05, 0.1, 0.2, 0.3, 0.5], True),
    ("model.wte_init_std", scaled(0.25, 0.5, 1, 2), True),
    ("model.lm_head_init_std", scaled(0.25, 0.5, 1, 2, 4, 10), True),
    ("model.matrix_init_scale", scaled(0.5, 0.75, 1, 1.25, 1.5, 2), True),
    ("optim.matrix_lr", _LR, True),
    ("optim.embedding_lr", _LR, True),
    ("optim.unembedding_lr", _LR, True),
    ("optim.scalar_lr", _LR, True),
    ("optim.resid_lr_mult", geometric(10**0.5, -2, 2), True),
    ("optim.muon_momentum", [0.85, 0.9, 0.95, 0.97, 0.98], True),
    ("optim.muon_momentum_start", [0.7, 0.8, 0.85, 0.9, 0.95], True),
    ("optim.muon_momentum_ramp_steps", scaled(0, 0.5, 1, 2), True),
    ("optim.muon_ns_steps", [2, 3, 4, 5], True),
    ("optim.muon_beta2", [0.9, 0.95, 0.99, 0.999], True),
    ("optim.weight_decay", [0.0, 0.05, 0.1, 0.2, 0.3, 0.4], True),
    ("optim.adam_beta1", [0.7, 0.8, 0.85, 0.9], True),
    ("optim.adam_beta2", [0.9, 0.95, 0.98, 0.99], True),
    ("optim.x0_beta1", [0.9, 0.96, 0.99], True),
    ("schedule.total_batch_tokens", geometric(2, -3, 2), True),
    ("schedule.device_batch_size", geometric(2, -4, 1), True),
    ("schedule.warmup_ratio", [0.0, 0.01, 0.02, 0.05, 0.1], True),
    ("schedule.warmdown_ratio", [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], True),
    ("schedule.final_lr_frac", [0.0, 0.05, 0.1, 0.2], True),
]:
  register_knob(_attr, _grid, _ordinal)


# ---------------------------------------------------------------------------------------------------------------
# MLP modules.

@dataclasses.dataclass(frozen=True)
class _MlpVariant:
  mult: Choice
  matrices: int  # d_model x hidden matrices (2 plain, 3 gated), for the parameter and memory estimates


_MLPS: dict[str, _MlpVariant] = {}
_MULTS = Choice((1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0), 4.0, ordinal=True)


def register_mlp_variant(name: str, builder: nc_model.MlpBuilder, fields: Mapping[str, FieldSpec] | None = None,
                         matrices: int = 2) -> None:
  """Adds MLP variant `name`: its Flax builder (registered with nanochat_jax.model.register_mlp) and its fields.

  builder(d_model, hidden, init_scale, rngs) -> nnx.Module. `fields` may only give "mult" (the hidden width
  multiple, Program's mlp_mult) as a Choice of positive numbers; default: 1..8 with default 4.
  `matrices` counts its d_model x hidden weight matrices (3 for gated MLPs) for the size estimates.
  Re-registering the same name with the same builder and fields is a no-op.
  """
  check_name("MLP variant", name)
  fields = dict(fields) if fields is not None else {"mult": _MULTS}
  mult = fields.get("mult")
  if set(fields) != {"mult"} or not isinstance(mult, Choice) or not all(
      isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in mult.values):
    raise ValueError(f"MLP variant {name!r}: fields must be {{'mult': Choice(positive numbers)}} "
                     f"(Program carries only mlp and mlp_mult), got {fields!r}")
  if not isinstance(matrices, int) or matrices < 1:
    raise ValueError(f"MLP variant {name!r}: matrices must be a positive int, got {matrices!r}")
  variant = _MlpVariant(Choice(tuple(float(v) for v in mult.values), float(mult.default), mult.ordinal), matrices)
  if _MLPS.get(name, variant) != variant:
    raise ValueError(f"MLP variant {name!r} is already registered with other fields")
  nc_model.register_mlp(name, builder)  # raises if `name` has a different builder
  _MLPS[name] = variant


register_mlp_variant("relu2", nc_model.MLP_VARIANTS["relu2"])
register_mlp_variant("gelu", nc_model.MLP_VARIANTS["gelu"])
# Gated: 3 matrices, so ~2.75x width matches relu2's parameters at 4x.
register_mlp_variant("swiglu", nc_model.MLP_VARIANTS["swiglu"],
                     {"mult": Choice((1.5, 2.0, 2.75, 3.5, 4.0, 5.5), 2.75, ordinal=True)}, matrices=3)


# ---------------------------------------------------------------------------------------------------------------
# Tree <-> Program.

def to_program(tree: Node) -> Program:
  """The Program a nanochat tree describes (structure only; validate the tree with its space first)."""
  if not isinstance(tree, Node) or tree.kind != "program":
    raise ValueError(f"expected a 'program' tree, got {tree!r:.80}")
  sections = {}
  for section, cls in _SECTIONS.items():
    kwargs: dict[str, Scalar] = {}
    for name, value in tree[section].fields:
      if isinstance(value, tuple):
        kwargs[name] = "".join(value)
      elif isinstance(value, Node):
        kwargs[name] = value.variant
        if name == "mlp":
          kwargs["mlp_mult"] = value["mult"]
      else:
        kwargs[name] = value
    try:
      sections[section] = cls(**kwargs)
    except TypeError as e:
      raise ValueError(f"{section}: tree does not match {cls.__name__}: {e}") from None
  return Program(**sections)


def from_program(program: Program) -> Node:
  """The tree of `program` (structure only: `space.validate` it to check it lies on that space's grids)."""
  sections = []
  for section, cls in _SECTIONS.items():
    cfg = getattr(program, section)
    fields: list[tuple[str, object]] = []
    for f in dataclasses.fields(cls):
      value, attr = getattr(cfg, f.name), f"{section}.{f.name}"
      if attr == "model.window_pattern":
        value = tuple(value)
      elif attr == "model.mlp":
        value = Node("mlp", value, (("mult", cfg.mlp_mult),))
      elif attr == "model.norm":
        value = Node("norm", value)
      elif attr == "model.mlp_mult":
        continue
      fields.append((f.name, value))
    sections.append((section, Node(section, "default", tuple(fields))))
  return Node("program", "nanochat", tuple(sections))


# ---------------------------------------------------------------------------------------------------------------
# Size estimates for the preset caps.

def _mlp_matrices(cfg: ModelConfig) -> int:
  return _MLPS[cfg.mlp].matrices if cfg.mlp in _MLPS else 2


def estimate_params(cfg: ModelConfig) -> int:
  """Parameter count of nanochat_jax.model.GPT(cfg) (exact for the built-in MLPs)."""
  return nc_config.estimate_params(cfg, _mlp_matrices(cfg))


def estimate_memory_gb(program: Program) -> float:
  """Rough peak training memory in GB (`nanochat_jax.config.estimate_memory_gb`)."""
  return nc_config.estimate_memory_gb(program, _mlp_matrices(program.model))


# ---------------------------------------------------------------------------------------------------------------
# The space.

@functools.lru_cache(maxsize=4096)
def _cached_program(tree: Node) -> Program:
  return to_program(tree)  # the constraints below share one compile per candidate tree


def _program_valid(tree: Node) -> str | None:
  try:
    _cached_program(tree).validate()
  except ValueError as e:
    return str(e)
  return None


def _caps(max_params: int, max_memory_gb: float) -> Callable[[Node], str | None]:
  def check(tree: Node) -> str | None:
    program = _cached_program(tree)
    return nc_config.size_error(program, max_params, max_memory_gb, _mlp_matrices(program.model))
  return check


def _get_preset(preset: str | Preset) -> Preset:
  if isinstance(preset, Preset):
    return preset
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
  return PRESETS[preset]


def nanochat_space(preset: str | Preset = "gpu") -> Space:
  """The space of nanochat Programs around `preset.program` (its default tree), capped by the preset."""
  preset = _get_preset(preset)
  program = preset.program
  program.validate()
  grammar = Grammar()
  grammar.add_variant("program", "nanochat", {section: Child(section) for section in _SECTIONS})
  for section, cls in _SECTIONS.items():
    cfg = getattr(program, section)
    fields: dict[str, FieldSpec] = {}
    for f in dataclasses.fields(cls):
      value, attr = getattr(cfg, f.name), f"{section}.{f.name}"
      if attr == "model.window_pattern":
        fields[f.name] = ListOf(Choice(("S", "L")), 1, max(MAX_LAYER_PATTERN, len(value)), tuple(value))
      elif attr in ("model.mlp", "model.norm"):
        fields[f.name] = Child(f.name, value)
      elif attr != "model.mlp_mult":
        fields[f.name] = _grid_choice(attr, value)
    grammar.add_variant(section, "default", fields)
  for name, mlp in _MLPS.items():
    mult = mlp.mult
    if name == program.model.mlp:  # the preset's width joins the grid as this variant's default
      mult = Choice(tuple(sorted({*mult.values, float(program.model.mlp_mult)})), float(program.model.mlp_mult),
                    mult.ordinal)
    grammar.add_variant("mlp", name, {"mult": mult})
  for name in nc_model.NORM_VARIANTS:
    grammar.add_variant("norm", name)
  for kind, name in (("mlp", program.model.mlp), ("norm", program.model.norm)):
    grammar.fields(kind, name)  # the preset's own modules must exist (register_mlp_variant for MLPs)
  grammar.add_constraint(_program_valid)
  grammar.add_constraint(_caps(preset.max_params, preset.max_memory_gb))
  space = Space(grammar, "program")
  space.validate(space.default())
  return space


def export_script(tree: Node, preset_name: str) -> str:
  """A standalone Python script that trains the tree's Program with nanochat_jax.train on `preset_name`.

  MLP variants registered at run time (not built into nanochat_jax.model) must be registered by the script's
  runner too, e.g. by importing the module that registers them before running it.
  """
  preset = _get_preset(preset_name)
  try:
    nanochat_space(preset).validate(tree)  # only registered names and grid values reach the script
  except ValueError as e:
    raise ValueError(f"export_script: not a valid {preset.name} program tree: {e}") from None
  for path, value in flatten(tree).items():
    for v in value if isinstance(value, tuple) else (value,):
      if isinstance(v, str) and not _SAFE_TEXT.fullmatch(v):
        raise ValueError(f"export_script: {path}={v!r} is not safe to write into a script")
  program = to_program(tree)
  changes = diff(from_program(preset.program), tree).replace("; ", "\n  ") or "none"
  return f'''#!/usr/bin/env python3
"""nanochat training program exported by arrl (tree {digest(tree)[:16]}, preset {preset.name}).

Changes from the preset's default program:
  {changes}

Run from the arrl repository or with arrl installed: python this_script.py [more nanochat_jax.train flags]
"""
import json
import os
import sys
import tempfile

PRESET = {preset.name!r}
PROGRAM = {pprint.pformat(program.to_dict(), width=100)}


def main() -> int:
  from nanochat_jax import train
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "program.json")
    with open(path, "w") as f:
      json.dump(PROGRAM, f)
    return train.main(["--program", path, "--preset", PRESET, *sys.argv[1:]])


if __name__ == "__main__":
  sys.exit(main())
'''
