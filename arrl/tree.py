"""Immutable program trees: typed nodes with named fields, dotted paths, canonical JSON, digests and diffs.

A tree is a `Node(kind, variant, fields)`. A field value is a scalar (bool/int/float/str), a tuple of scalars
(a list field) or a child `Node`. Fields are kept sorted by name, so two trees with the same content are equal,
hash equal and serialise to the same canonical JSON whatever order they were built in.

Paths are dotted field names from the root, with an optional list index at the end:
"model.mlp.mult", "model.window_pattern[2]". The empty path "" is the root.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
from typing import Any, Iterable, Mapping, Union

Scalar = Union[bool, int, float, str]
Value = Union[Scalar, tuple, "Node"]  # a tuple holds the scalars of a list field
PathPart = Union[str, int]

_SCALAR_TYPES = (bool, int, float, str)
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")


def check_scalar(where: str, value: Any) -> Scalar:
  if not isinstance(value, _SCALAR_TYPES):
    raise ValueError(f"{where}: {value!r} is not a scalar (bool, int, float or str)")
  if isinstance(value, float) and not math.isfinite(value):
    raise ValueError(f"{where}: {value!r} is not a finite number")
  return value


def check_value(where: str, value: Any) -> Value:
  if isinstance(value, Node):
    return value
  if isinstance(value, (list, tuple)):
    return tuple(check_scalar(f"{where}[{i}]", v) for i, v in enumerate(value))
  return check_scalar(where, value)


def _same(a: Value, b: Value) -> bool:
  """Identity of two field values: equal and of the same types (8 and 8.0 differ, as in the JSON digest).
  Stricter than grammar.same, which matches a value to a grid entry and only keeps bools apart from ints."""
  if isinstance(a, tuple):
    return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  return type(a) is type(b) and a == b


@dataclasses.dataclass(frozen=True)
class Node:
  """One module or config section: `kind` (what it is), `variant` (which implementation), its fields."""
  kind: str
  variant: str
  fields: tuple[tuple[str, Value], ...] = ()

  def __post_init__(self) -> None:
    if not isinstance(self.kind, str) or not self.kind or not isinstance(self.variant, str) or not self.variant:
      raise ValueError(f"kind and variant must be non-empty strings, got {self.kind!r}, {self.variant!r}")
    items = self.fields.items() if isinstance(self.fields, Mapping) else self.fields
    checked = sorted(((name, check_value(f"{self.kind}.{name}", v)) for name, v in items), key=lambda kv: kv[0])
    names = [name for name, _ in checked]
    if len(set(names)) != len(names):
      raise ValueError(f"{self.kind}: duplicate field names in {names}")
    object.__setattr__(self, "fields", tuple(checked))
    object.__setattr__(self, "_index", {name: i for i, name in enumerate(names)})

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(name for name, _ in self.fields)

  def __contains__(self, name: str) -> bool:
    return name in self._index

  def __getitem__(self, name: str) -> Value:
    if name not in self._index:
      raise KeyError(f"{self.kind}:{self.variant} has no field {name!r}; fields: {', '.join(self.names) or 'none'}")
    return self.fields[self._index[name]][1]

  def __eq__(self, other: object) -> bool:
    # Typed: False, 0 and 0.0 are different settings (and serialize differently), though Python calls them equal.
    if self is other:
      return True
    if not isinstance(other, Node):
      return NotImplemented
    return (hash(self) == hash(other) and self.kind == other.kind and self.variant == other.variant
            and len(self.fields) == len(other.fields)
            and all(n == m and _same(v, w) for (n, v), (m, w) in zip(self.fields, other.fields)))

  def __hash__(self) -> int:
    # Cached: edits rebuild only the path to the change, so most subtrees of a new tree hash for free.
    h = self.__dict__.get("_hash")
    if h is None:
      h = hash((self.kind, self.variant, self.fields))
      object.__setattr__(self, "_hash", h)
    return h

  def __getstate__(self) -> dict[str, Any]:
    return {k: v for k, v in self.__dict__.items() if k != "_hash"}  # str hashes differ between processes

  def replace(self, **changes: Value) -> "Node":
    """A copy with the given existing fields changed (only the changed values are re-checked)."""
    fields = list(self.fields)
    for name, value in changes.items():
      self[name]  # raises KeyError naming the legal fields
      fields[self._index[name]] = (name, check_value(f"{self.kind}.{name}", value))
    node = object.__new__(Node)
    for attr, value in (("kind", self.kind), ("variant", self.variant), ("_index", self._index),
                        ("fields", tuple(fields))):
      object.__setattr__(node, attr, value)  # same names in the same order: the sorted invariant holds
    return node


# ---------------------------------------------------------------------------------------------------------------
# Paths.

@functools.lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[PathPart, ...]:
  """"a.b[2]" -> ("a", "b", 2); "" -> (). A list index may only end the path."""
  if path == "":
    return ()
  parts: list[PathPart] = []
  segments = path.split(".")
  for k, segment in enumerate(segments):
    m = _SEGMENT.fullmatch(segment)
    if m is None or (m.group(2) is not None and k != len(segments) - 1):
      raise ValueError(f"bad path {path!r}: expected dotted field names with an optional final [index]")
    parts.append(m.group(1))
    if m.group(2) is not None:
      parts.append(int(m.group(2)))
  return tuple(parts)


def join_path(parent: str, name: str) -> str:
  return f"{parent}.{name}" if parent else name


def _step(value: Value, part: PathPart, path: str) -> Value:
  if isinstance(part, int):
    if not isinstance(value, tuple):
      raise ValueError(f"path {path!r}: {value!r} is not a list")
    if not 0 <= part < len(value):
      raise ValueError(f"path {path!r}: index {part} out of range for a list of length {len(value)}")
    return value[part]
  if not isinstance(value, Node):
    raise ValueError(f"path {path!r}: cannot take field {part!r} of the scalar {value!r}")
  try:
    return value[part]
  except KeyError as e:
    raise ValueError(f"path {path!r}: {e.args[0]}") from None


def get_path(tree: Node, path: str) -> Value:
  value: Value = tree
  for part in parse_path(path):
    value = _step(value, part, path)
  return value


def set_path(tree: Node, path: str, new: Value) -> Node:
  """A copy of `tree` with the value at `path` replaced (the root itself cannot be replaced)."""
  parts = parse_path(path)
  if not parts:
    raise ValueError("set_path needs a non-empty path")

  def rebuild(value: Value, rest: tuple[PathPart, ...]) -> Value:
    part = rest[0]
    old = _step(value, part, path)
    replacement = new if len(rest) == 1 else rebuild(old, rest[1:])
    if isinstance(part, int):
      return value[:part] + (replacement,) + value[part + 1:]
    return value.replace(**{part: replacement})

  return rebuild(tree, parts)


# ---------------------------------------------------------------------------------------------------------------
# Canonical JSON and identity.

def to_data(tree: Node) -> dict[str, Any]:
  """Plain JSON-able data: {"kind", "variant", "fields": {name: value}}; lists for list fields."""
  def conv(v: Value) -> Any:
    if isinstance(v, Node):
      return to_data(v)
    return list(v) if isinstance(v, tuple) else v
  return {"kind": tree.kind, "variant": tree.variant, "fields": {n: conv(v) for n, v in tree.fields}}


def from_data(data: Any, where: str = "tree") -> Node:
  if not isinstance(data, dict) or set(data) != {"kind", "variant", "fields"}:
    raise ValueError(f"{where}: expected an object with exactly the keys kind, variant, fields; got {data!r:.200}")
  if not isinstance(data["fields"], dict):
    raise ValueError(f"{where}.fields: expected an object, got {type(data['fields']).__name__}")

  def conv(name: str, v: Any) -> Value:
    return from_data(v, f"{where}.{name}") if isinstance(v, dict) else v

  return Node(data["kind"], data["variant"], tuple((n, conv(n, v)) for n, v in data["fields"].items()))


def to_json(tree: Node) -> str:
  """Canonical JSON: sorted keys, no whitespace, floats as Python's shortest round-trip repr."""
  return json.dumps(to_data(tree), sort_keys=True, separators=(",", ":"), allow_nan=False)


def from_json(text: str) -> Node:
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"tree JSON does not parse: {e}") from None
  return from_data(data)


def digest(tree: Node) -> str:
  """sha256 hex of the canonical JSON: the tree's identity for dedup and the ledger."""
  return hashlib.sha256(to_json(tree).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Flat views: feature tokens, flat params, diffs.

def flatten(tree: Node, prefix: str = "") -> dict[str, Value]:
  """{path: value} for every scalar and list field, plus {path: variant} for every child node.

  The root's own kind and variant are not included (a space fixes the root kind; see `diff` for variants).
  """
  out: dict[str, Value] = {}
  for name, value in tree.fields:
    path = join_path(prefix, name)
    if isinstance(value, Node):
      out[path] = value.variant
      out.update(flatten(value, path))
    else:
      out[path] = value
  return out


def format_value(value: Value | None) -> str:
  if value is None:
    return "(unset)"
  if isinstance(value, tuple):
    if value and all(isinstance(v, str) and len(v) == 1 for v in value):
      return "".join(value)  # S/L patterns read as "SSSL"
    return "[" + ", ".join(format_value(v) for v in value) + "]"
  return str(value)


def _short_names(paths: Iterable[str]) -> dict[str, str]:
  """Each path's last field name where that is unambiguous among `paths`, else the full path."""
  paths = list(paths)
  last = [p.rsplit(".", 1)[-1] for p in paths]
  return {p: (name if last.count(name) == 1 else p) for p, name in zip(paths, last)}


def diff(a: Node, b: Node) -> str:
  """Readable change list, e.g. "mlp: relu2 -> swiglu; matrix_lr: 0.04 -> 0.05"; "" when a == b."""
  changes: list[str] = []
  if (a.kind, a.variant) != (b.kind, b.variant):
    changes.append(f"<root>: {a.kind}:{a.variant} -> {b.kind}:{b.variant}")
  fa, fb = flatten(a), flatten(b)
  paths = list(fa) + [p for p in fb if p not in fa]
  short = _short_names(paths)
  for p in paths:
    va, vb = fa.get(p), fb.get(p)
    if va != vb or type(va) is not type(vb):
      changes.append(f"{short[p]}: {format_value(va)} -> {format_value(vb)}")
  return "; ".join(changes)


def render(tree: Node) -> str:
  """Multi-line "path = value" listing, for logs and reports."""
  lines = [f"{tree.kind}:{tree.variant}"]
  lines += [f"  {p} = {format_value(v)}" for p, v in flatten(tree).items()]
  return "\n".join(lines)
