"""The nanochat search space: trees that compile exactly to `nanochat_jax.config.Program`.

Tree layout (paths mirror Program's attributes):
  program:nanochat
    model:default     every ModelConfig field, except
                        window_pattern  a LIST of "S"/"L" (list edits insert/delete/replace layers' windows)
                        mlp             a module whose variant is the MLP kind and whose field `mult` is mlp_mult
                        norm, attention, posenc   modules whose variant is that kind
    optim:default     every OptimConfig field; matrix_optimizer is a module
    schedule:default  every ScheduleConfig field; lr_schedule is a module

A Program field is searchable when `register_knob` gave it a grid; every other field is fixed at the preset's
value (a one-value grid), so the tree always describes the whole Program. Each grid is built around the
preset's default, which is always on the grid and is the default value: the default tree IS `preset.program`.

Extending the space is one call in one place:
  register_knob("optim.adam_eps", [1e-10, 1e-8])                  # a new searchable hyperparameter
  register_variant("norm", "dyt", fn)                                 # a new module variant (see KINDS)
  register_mlp_variant("relu", builder, fields={"mult": Choice((2.0, 4.0), default=4.0)})  # an MLP with its sizes
A variant added to a nanochat_jax registry directly (e.g. nanochat_jax.model.NORM_VARIANTS.register) appears with
its kind's default fields and size model. Spaces built after a registration see it; a trial worker sees it only
if it imports the code that registers it (arrl.plugins).

Constraints: `Program.validate` (n_head % n_kv_head, total_batch_tokens % (device_batch_size*sequence_len),
...), and the preset's caps on the estimated parameter count and training memory (see `estimate_memory_gb`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import pprint
import re
from typing import Callable, Iterator, Mapping, Sequence, Union

from nanochat_jax import config as nc_config
from nanochat_jax import model as nc_model
from nanochat_jax import optimizer as nc_optimizer
from nanochat_jax.config import (AttentionSize, MlpSize, ModelConfig, OptimConfig, Program, ScheduleConfig,
                                 SizeModel)
from nanochat_jax.env import PRESETS, Preset
from nanochat_jax.registry import Registry

from arrl import plugins
from arrl.grammar import Child, Choice, FieldSpec, Grammar, ListOf, check_name, same
from arrl.space import Space
from arrl.tree import Node, Scalar, digest, diff, flatten

_SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "schedule": ScheduleConfig}
_SAFE_TEXT = re.compile(r"[A-Za-z0-9_.+\-]*")  # strings that may appear in an exported script's docstring
MAX_LAYER_PATTERN = 8  # longest window_pattern list (it is cycled over the layers)

Grid = Union[Sequence[Scalar], Callable[[Scalar], Sequence[Scalar]]]  # values, or default -> values


# ---------------------------------------------------------------------------------------------------------------
# Module kinds. Each is a Program field naming a variant in one of nanochat_jax's registries; in the tree it is a
# module node of that kind (kind name = field name) whose fields set other Program fields (the MLP's `mult` is
# mlp_mult). Every name in the registry is a variant of the space; `register_variant` adds one with its fields
# and its size model.

_MULTS = Choice((1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0), 4.0, ordinal=True)


@dataclasses.dataclass(frozen=True)
class _Kind:
  section: str                               # Program section holding the field that names the variant
  builders: Registry                         # nanochat_jax's implementations
  field_attrs: Mapping[str, str] = dataclasses.field(default_factory=dict)  # module field -> Program field
  default_fields: Mapping[str, Choice] = dataclasses.field(default_factory=dict)
  default_size: SizeModel | None = None      # None: the module has no parameters


KINDS: dict[str, _Kind] = {
    "mlp": _Kind("model", nc_model.MLP_VARIANTS, {"mult": "mlp_mult"}, {"mult": _MULTS}, MlpSize()),
    "norm": _Kind("model", nc_model.NORM_VARIANTS),
    "attention": _Kind("model", nc_model.ATTENTION_VARIANTS, default_size=AttentionSize()),
    "posenc": _Kind("model", nc_model.POSENC_VARIANTS),
    "matrix_optimizer": _Kind("optim", nc_optimizer.MATRIX_OPTIMIZERS),
    "lr_schedule": _Kind("schedule", nc_config.LR_SCHEDULES),
}
_MODULE_FIELDS = {f"{kind.section}.{attr}" for name, kind in KINDS.items()
                  for attr in (name, *kind.field_attrs.values())} | {"model.window_pattern"}


@dataclasses.dataclass(frozen=True)
class _Variant:
  fields: Mapping[str, Choice]
  size: SizeModel | None


_VARIANTS: dict[str, Registry[_Variant]] = {kind: Registry(f"{kind} variant", callables=False) for kind in KINDS}


def register_variant(kind: str, name: str, builder: Callable, fields: Mapping[str, FieldSpec] | None = None,
                     size: SizeModel | None = None) -> None:
  """Adds variant `name` of module `kind` (see KINDS): its nanochat_jax builder, its fields and its size model.

  builder: what the kind's registry holds (e.g. nanochat_jax.model.MLP_VARIANTS documents the MLP builder).
  fields: a Choice per Program field the module carries (only the MLP has one, "mult"); default: the kind's.
  size: params/activations per layer for the caps (MLP and attention; default: the kind's built-in model).
  Re-registering a name with the same builder, fields and size is a no-op; other values raise.
  """
  if kind not in KINDS:
    raise ValueError(f"unknown module kind {kind!r}; kinds: {', '.join(KINDS)}")
  check_name(f"{kind} variant", name)
  spec = KINDS[kind]
  fields = dict(fields) if fields is not None else dict(spec.default_fields)
  if set(fields) != set(spec.field_attrs) or not all(isinstance(c, Choice) for c in fields.values()):
    want = ", ".join(f"{f!r}: Choice" for f in spec.field_attrs)
    raise ValueError(f"{kind} variant {name!r}: fields must be {{{want}}} (the Program fields a {kind} module "
                     f"sets), got {fields!r}")
  if size is not None and spec.default_size is None:
    raise ValueError(f"{kind} variant {name!r}: a {kind} has no parameters, so it takes no size model")
  variant = _Variant(fields, size or spec.default_size)
  if name in _VARIANTS[kind] and _VARIANTS[kind][name] != variant:
    raise ValueError(f"{kind} variant {name!r} is already registered with other fields or size")
  spec.builders.register(name, builder)  # raises if `name` has a different builder
  _VARIANTS[kind].register(name, variant)


def register_mlp_variant(name: str, builder: nc_model.MlpBuilder, fields: Mapping[str, FieldSpec] | None = None,
                         matrices: int = 2) -> None:
  """register_variant("mlp", ...) with `matrices` d_model x hidden weight matrices (3 for gated MLPs)."""
  if not isinstance(matrices, int) or matrices < 1:
    raise ValueError(f"mlp variant {name!r}: matrices must be a positive int, got {matrices!r}")
  if fields is not None and isinstance(fields.get("mult"), Choice):
    mult = fields["mult"]  # a width multiple is a float in the Program
    fields = {**fields, "mult": Choice(tuple(float(v) for v in mult.values), float(mult.default), mult.ordinal)}
  register_variant("mlp", name, builder, fields, MlpSize(matrices))


def _variant(kind: str, name: str) -> _Variant:
  """A registered variant, or the kind's defaults for one added to nanochat_jax's registry directly."""
  spec = KINDS[kind]
  return _VARIANTS[kind].get(name) or _Variant(dict(spec.default_fields), spec.default_size)


@contextlib.contextmanager
def scoped_registries() -> Iterator[None]:
  """Every variant, knob or plugin registered inside the block is forgotten when it exits (tests, notebooks)."""
  with contextlib.ExitStack() as stack:
    stack.enter_context(plugins.scoped())
    for registry in (_KNOBS, *_VARIANTS.values(), *(kind.builders for kind in KINDS.values())):
      stack.enter_context(registry.scoped())
    yield


# Gated: 3 matrices, so ~2.75x width matches relu2's parameters at 4x.
register_mlp_variant("swiglu", nc_model.MLP_VARIANTS["swiglu"],
                     {"mult": Choice((1.5, 2.0, 2.75, 3.5, 4.0, 5.5), 2.75, ordinal=True)}, matrices=3)


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


_KNOBS: Registry[_Knob] = Registry("knob", callables=False)


def register_knob(attr: str, grid: Grid, ordinal: bool = True) -> None:
  """Makes Program field `attr` ("section.field") searchable over `grid` (values, or default -> values).

  The preset's own value is always added to the grid and is the default. Ordinal grids are kept sorted.
  """
  section, _, name = attr.partition(".")
  if section not in _SECTIONS or name not in {f.name for f in dataclasses.fields(_SECTIONS[section])}:
    raise ValueError(f"{attr!r} is not a Program field; expected 'section.field' with section in "
                     f"{', '.join(_SECTIONS)} (see nanochat_jax.config)")
  if attr in _MODULE_FIELDS:
    raise ValueError(f"{attr!r} is a module/list field of the tree; use register_variant for modules")
  if attr in _KNOBS:
    raise ValueError(f"{attr!r} is already searchable")
  _KNOBS.register(attr, _Knob(grid, ordinal))


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
        for field, attr in KINDS[name].field_attrs.items():
          kwargs[attr] = value[field]
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
      elif f.name in KINDS:
        value = Node(f.name, value, tuple((field, getattr(cfg, a)) for field, a in KINDS[f.name].field_attrs.items()))
      elif attr in _MODULE_FIELDS:
        continue  # carried by its module node
      fields.append((f.name, value))
    sections.append((section, Node(section, "default", tuple(fields))))
  return Node("program", "nanochat", tuple(sections))


# ---------------------------------------------------------------------------------------------------------------
# Size estimates for the preset caps.

def _sizes(cfg: ModelConfig) -> list[SizeModel]:
  sizes = [_variant(kind, getattr(cfg, kind)).size for kind, spec in KINDS.items() if spec.section == "model"]
  return [s for s in sizes if s is not None]


def estimate_params(cfg: ModelConfig) -> int:
  """Parameter count of nanochat_jax.model.GPT(cfg) (exact for the built-in modules)."""
  return nc_config.estimate_params(cfg, _sizes(cfg))


def estimate_memory_gb(program: Program) -> float:
  """Rough peak training memory in GB (`nanochat_jax.config.estimate_memory_gb` with the modules' size models)."""
  return nc_config.estimate_memory_gb(program, _sizes(program.model))


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


def _with_default(choice: Choice, default: Scalar) -> Choice:
  if isinstance(choice.default, float):
    default = float(default)
  values = [*choice.values, *([] if choice.index(default) is not None else [default])]
  return Choice(tuple(sorted(values) if choice.ordinal else values), default, choice.ordinal)


def _caps(max_params: int, max_memory_gb: float) -> Callable[[Node], str | None]:
  def check(tree: Node) -> str | None:
    program = _cached_program(tree)
    return nc_config.size_error(program, max_params, max_memory_gb, _sizes(program.model))
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
      elif f.name in KINDS:
        fields[f.name] = Child(f.name, value)
      elif attr not in _MODULE_FIELDS:
        fields[f.name] = _grid_choice(attr, value)
    grammar.add_variant(section, "default", fields)
  for kind, spec in KINDS.items():
    cfg, chosen = getattr(program, spec.section), getattr(getattr(program, spec.section), kind)
    spec.builders.lookup(chosen)  # the preset's own modules must exist
    for name in spec.builders:
      fields = dict(_variant(kind, name).fields)
      if name == chosen:  # the preset's values join the grids as this variant's defaults
        fields = {f: _with_default(c, getattr(cfg, spec.field_attrs[f])) for f, c in fields.items()}
      grammar.add_variant(kind, name, fields)
  grammar.add_constraint(_program_valid)
  grammar.add_constraint(_caps(preset.max_params, preset.max_memory_gb))
  space = Space(grammar, "program")
  space.validate(space.default())
  return space


def export_script(tree: Node, preset_name: str, plugin_specs: Sequence[str] | None = None) -> str:
  """A standalone Python script that trains the tree's Program with nanochat_jax.train on `preset_name`.

  The script imports `plugin_specs` (default: the plugins loaded in this process, arrl.plugins) before
  training, so their variants resolve; variants registered otherwise must be registered by its runner too.
  """
  if plugin_specs is None:
    plugin_specs = [p.spec for p in plugins.loaded()]
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
PLUGINS = {pprint.pformat(list(plugin_specs), width=100)}  # modules or files that register variants


def main() -> int:
  from arrl.plugins import load
  from nanochat_jax import train
  for spec in PLUGINS:
    load(spec)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "program.json")
    with open(path, "w") as f:
      json.dump(PROGRAM, f)
    return train.main(["--program", path, "--preset", PRESET, *sys.argv[1:]])


if __name__ == "__main__":
  sys.exit(main())
'''
