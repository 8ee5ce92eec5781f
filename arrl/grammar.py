"""The grammar of a searchable tree: kinds, their variants, each variant's typed fields, cross-field constraints.

A field spec is one of
  Choice(values, default, ordinal)   a finite grid (ordinal=True: an ordered ladder) of scalars,
  ListOf(element, min_len, max_len, default)   a variable-length list of Choice elements,
  Child(kind, default_variant)       a sub-module whose variant is itself searchable.
Adding a module variant or a hyperparameter is one `add_variant` call; validation, rendering and the action
space (arrl.edits) read the grammar and need no other change.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Callable, Iterator, Mapping, Sequence, Union

from arrl.tree import Node, Scalar, Value, check_scalar, join_path, parse_path

Constraint = Callable[[Node], Union[str, None]]  # root tree -> error message, or None when satisfied
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(what: str, name: object) -> str:
  """`name` if it is an identifier; names end up in paths, diffs and exported scripts, so nothing else passes."""
  if not isinstance(name, str) or not _NAME.fullmatch(name):
    raise ValueError(f"{what} name {name!r} must be an identifier (letters, digits, _; not starting with a digit)")
  return name


def same(a: object, b: object) -> bool:
  """Equality that keeps bools apart from ints (True == 1 in Python, but not on a grid)."""
  return a == b and isinstance(a, bool) == isinstance(b, bool)


def _fmt(values: Sequence[Scalar]) -> str:
  return ", ".join(repr(v) for v in values)


@dataclasses.dataclass(frozen=True)
class Choice:
  """A finite set of legal scalars; `default` defaults to the first value."""
  values: tuple[Scalar, ...]
  default: Scalar | None = None
  ordinal: bool = False

  def __post_init__(self) -> None:
    values = tuple(check_scalar("Choice value", v) for v in self.values)
    if not values:
      raise ValueError("Choice needs at least one value")
    for i, v in enumerate(values):
      if any(same(v, w) for w in values[:i]):
        raise ValueError(f"Choice values must be distinct; {v!r} repeats in ({_fmt(values)})")
    object.__setattr__(self, "values", values)
    default = values[0] if self.default is None else self.default
    if self.index(default) is None:
      raise ValueError(f"Choice default {default!r} is not one of ({_fmt(values)})")
    object.__setattr__(self, "default", values[self.index(default)])

  def index(self, value: object) -> int | None:
    return next((i for i, v in enumerate(self.values) if same(v, value)), None)

  def canonical(self, value: object, where: str) -> Scalar:
    """The grid's own copy of `value` (so 4 and 4.0 serialise alike), or ValueError listing the legal values."""
    i = self.index(value)
    if i is None:
      raise ValueError(f"{where}={value!r} is not legal; legal: {_fmt(self.values)}")
    return self.values[i]

  def rank(self, value: object) -> float:
    """Position of `value` on the grid in [0, 1] (meaningful for ordinal ladders; a feature for the agent)."""
    return self.index(value) / max(1, len(self.values) - 1)


@dataclasses.dataclass(frozen=True)
class ListOf:
  """A list of `element` values with min_len <= length <= max_len."""
  element: Choice
  min_len: int = 1
  max_len: int = 8
  default: tuple[Scalar, ...] | None = None  # None -> min_len copies of element.default

  def __post_init__(self) -> None:
    if not isinstance(self.element, Choice):
      raise ValueError(f"ListOf element must be a Choice, got {type(self.element).__name__}")
    if not 0 <= self.min_len <= self.max_len:
      raise ValueError(f"ListOf needs 0 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
    default = (self.element.default,) * self.min_len if self.default is None else tuple(self.default)
    object.__setattr__(self, "default", self.canonical(default, "ListOf default"))

  def canonical(self, value: object, where: str) -> tuple[Scalar, ...]:
    if not isinstance(value, (tuple, list)):
      raise ValueError(f"{where}: expected a list, got {value!r}")
    if not self.min_len <= len(value) <= self.max_len:
      raise ValueError(f"{where}: length {len(value)} is not in {self.min_len}..{self.max_len}")
    return tuple(self.element.canonical(v, f"{where}[{i}]") for i, v in enumerate(value))


@dataclasses.dataclass(frozen=True)
class Child:
  """A sub-module of `kind`; `default_variant` None -> the kind's first registered variant."""
  kind: str
  default_variant: str | None = None


FieldSpec = Union[Choice, ListOf, Child]


class Grammar:
  """Registry of kinds -> variants -> ordered field specs, plus cross-field constraints on the root tree."""

  def __init__(self) -> None:
    self._kinds: dict[str, dict[str, dict[str, FieldSpec]]] = {}
    self._constraints: list[Constraint] = []

  def add_variant(self, kind: str, variant: str, fields: Mapping[str, FieldSpec] | None = None) -> None:
    """Registers `variant` of `kind` (creating the kind) with its fields, in declaration order."""
    fields = dict(fields or {})
    check_name("kind", kind)
    check_name("variant", variant)
    if variant in self._kinds.get(kind, {}):
      raise ValueError(f"variant {variant!r} of kind {kind!r} is already registered")
    for name, spec in fields.items():
      if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{kind}:{variant}: field name {name!r} must be an identifier (no dots or brackets)")
      if not isinstance(spec, (Choice, ListOf, Child)):
        raise ValueError(f"{kind}:{variant}.{name}: spec must be Choice, ListOf or Child, got {spec!r}")
    self._kinds.setdefault(kind, {})[variant] = fields

  def fingerprint(self) -> str:
    """sha256 of the kinds, variants and field specs (constraints are code and are not part of it)."""
    return hashlib.sha256(repr(self._kinds).encode()).hexdigest()

  def add_constraint(self, fn: Constraint) -> None:
    if not callable(fn):
      raise ValueError(f"a constraint must be callable tree -> str | None, got {fn!r}")
    self._constraints.append(fn)

  def variants(self, kind: str) -> tuple[str, ...]:
    if kind not in self._kinds:
      raise ValueError(f"unknown kind {kind!r}; known: {', '.join(self._kinds) or 'none'}")
    return tuple(self._kinds[kind])

  def fields(self, kind: str, variant: str) -> Mapping[str, FieldSpec]:
    variants = self.variants(kind)
    if variant not in variants:
      raise ValueError(f"unknown variant {variant!r} of kind {kind!r}; known: {', '.join(variants)}")
    return self._kinds[kind][variant]

  def default(self, kind: str, variant: str | None = None) -> Node:
    """The node of `kind` (its first variant unless given) with every field, recursively, at its default."""
    variant = self.variants(kind)[0] if variant is None else variant
    values: list[tuple[str, Value]] = []
    for name, spec in self.fields(kind, variant).items():
      if isinstance(spec, Child):
        values.append((name, self.default(spec.kind, spec.default_variant)))
      else:
        values.append((name, spec.default))
    return Node(kind, variant, tuple(values))

  def spec_at(self, tree: Node, path: str) -> FieldSpec:
    """The spec of the field at `path` ("" -> Child(root kind)); list-item paths give the ListOf."""
    parts = [p for p in parse_path(path) if isinstance(p, str)]
    spec: FieldSpec = Child(tree.kind)
    node: Value = tree
    for k, name in enumerate(parts):
      if not isinstance(node, Node):
        raise ValueError(f"path {path!r}: {'.'.join(parts[:k])} is not a module")
      specs = self.fields(node.kind, node.variant)
      if name not in specs:
        raise ValueError(f"path {path!r}: {node.kind}:{node.variant} has no field {name!r}; "
                         f"fields: {', '.join(specs) or 'none'}")
      spec = specs[name]
      node = node[name] if name in node else None  # a missing field is reported by the next step, if any
    return spec

  def slots(self, tree: Node) -> Iterator[tuple[str, FieldSpec, Value]]:
    """Every editable place of a valid tree as (path, spec, current value), parents before their fields.

    The root comes first as ("", Child(root kind), tree) so a multi-variant root can be swapped too.
    """
    yield "", Child(tree.kind), tree

    def walk(node: Node, prefix: str) -> Iterator[tuple[str, FieldSpec, Value]]:
      for name, spec in self.fields(node.kind, node.variant).items():
        path, value = join_path(prefix, name), node[name]
        yield path, spec, value
        if isinstance(spec, Child):
          yield from walk(value, path)

    yield from walk(tree, "")

  def check_constraints(self, tree: Node) -> str | None:
    for fn in self._constraints:
      message = fn(tree)
      if message is not None:
        return message
    return None

  def check(self, tree: object) -> str | None:
    """The first problem with `tree` (structure, legal values, then constraints), or None if it is valid."""
    if not isinstance(tree, Node):
      return f"expected a Node, got {type(tree).__name__}"
    try:
      self._check_node(tree, "")
    except ValueError as e:
      return str(e)
    return self.check_constraints(tree)

  def validate(self, tree: object) -> None:
    """Raises ValueError saying what is wrong (unknown field, illegal value with the legal ones, constraint)."""
    message = self.check(tree)
    if message is not None:
      raise ValueError(message)

  def _check_node(self, node: Node, path: str) -> None:
    where = path or "<root>"
    if node.kind not in self._kinds:
      raise ValueError(f"{where}: unknown kind {node.kind!r}; known: {', '.join(self._kinds)}")
    variants = self._kinds[node.kind]
    if node.variant not in variants:
      raise ValueError(f"{where}: unknown variant {node.variant!r} of kind {node.kind!r}; "
                       f"known: {', '.join(variants)}")
    specs = variants[node.variant]
    unknown = [n for n in node.names if n not in specs]
    if unknown:
      raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} for {node.kind}:{node.variant}; "
                       f"fields: {', '.join(specs) or 'none'}")
    for name, spec in specs.items():
      sub = join_path(path, name)
      if name not in node:
        raise ValueError(f"{sub}: missing field of {node.kind}:{node.variant}")
      value = node[name]
      if isinstance(spec, Child):
        if not isinstance(value, Node) or value.kind != spec.kind:
          raise ValueError(f"{sub}: expected a {spec.kind!r} module, got {value!r:.80}")
        self._check_node(value, sub)
      elif isinstance(spec, ListOf):
        self._require_identical(spec.canonical(value, sub), value, sub)
      else:
        if isinstance(value, (tuple, Node)):
          raise ValueError(f"{sub}: expected a scalar, got {value!r:.80}")
        self._require_identical(spec.canonical(value, sub), value, sub)

  @staticmethod
  def _require_identical(canonical: Value, value: Value, where: str) -> None:
    # 4 vs 4.0 would pass `==` but digest differently; a valid tree holds the grid's own values.
    if repr(canonical) != repr(value):
      raise ValueError(f"{where}={value!r} must be written exactly as the grid's {canonical!r}")
