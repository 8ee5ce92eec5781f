"""Edits: the only way a program tree changes. Each is grammar-checked, so every result is valid by construction.

An edit has a `site` (op + path (+ index), hashable: where to act) and a `value` (what to put there). The PPO
agent picks a site, then a value among `legal_actions(grammar, tree)[site]`; `make_edit(site, value)` turns the
pair back into an edit. Edits serialise with `to_dict()` / `edit_from_dict` for the ledger.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Iterator, Union

from arrl.grammar import Child, Choice, Grammar, ListOf, same
from arrl.tree import Node, Scalar, get_path, parse_path, set_path

Site = tuple  # ("set"|"swap", path) or ("insert"|"delete"|"replace", path, index)


class IllegalEdit(ValueError):
  """An edit that does not apply to the tree or whose result breaks the grammar or a constraint."""


class _Edit:
  op: ClassVar[str]

  @property
  def site(self) -> Site:
    index = getattr(self, "index", None)
    return (self.op, self.path) if index is None else (self.op, self.path, index)

  def to_dict(self) -> dict[str, Any]:
    return {"op": self.op, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class SetField(_Edit):
  path: str
  value: Scalar
  op: ClassVar[str] = "set"

  def __str__(self) -> str:
    return f"set {self.path}={self.value!r}"


@dataclasses.dataclass(frozen=True)
class SwapVariant(_Edit):
  """Replaces the module at `path` ("" = root) by `variant` with all its fields at their defaults."""
  path: str
  variant: str
  op: ClassVar[str] = "swap"

  @property
  def value(self) -> str:
    return self.variant

  def __str__(self) -> str:
    return f"swap {self.path or '<root>'} -> {self.variant}"


@dataclasses.dataclass(frozen=True)
class ListInsert(_Edit):
  path: str
  index: int
  value: Scalar
  op: ClassVar[str] = "insert"

  def __str__(self) -> str:
    return f"insert {self.path}[{self.index}]={self.value!r}"


@dataclasses.dataclass(frozen=True)
class ListDelete(_Edit):
  path: str
  index: int
  op: ClassVar[str] = "delete"

  @property
  def value(self) -> None:
    return None

  def __str__(self) -> str:
    return f"delete {self.path}[{self.index}]"


@dataclasses.dataclass(frozen=True)
class ListReplace(_Edit):
  path: str
  index: int
  value: Scalar
  op: ClassVar[str] = "replace"

  def __str__(self) -> str:
    return f"replace {self.path}[{self.index}]={self.value!r}"


Edit = Union[SetField, SwapVariant, ListInsert, ListDelete, ListReplace]
_OPS: dict[str, type] = {cls.op: cls for cls in (SetField, SwapVariant, ListInsert, ListDelete, ListReplace)}
OPS: tuple[str, ...] = tuple(_OPS)


def edit_from_dict(d: dict[str, Any]) -> Edit:
  """Inverse of `edit.to_dict()`."""
  if not isinstance(d, dict) or d.get("op") not in _OPS:
    raise ValueError(f"an edit needs 'op' in {', '.join(_OPS)}; got {d!r:.200}")
  cls = _OPS[d["op"]]
  names = [f.name for f in dataclasses.fields(cls)]
  given = {k: v for k, v in d.items() if k != "op"}
  if set(given) != set(names):
    raise ValueError(f"a {d['op']!r} edit needs exactly the keys op, {', '.join(names)}; got {', '.join(d)}")
  if not isinstance(given["path"], str):
    raise ValueError(f"edit path must be a string, got {given['path']!r}")
  if "index" in given and (not isinstance(given["index"], int) or isinstance(given["index"], bool)):
    raise ValueError(f"edit index must be an int, got {given['index']!r}")
  return cls(**given)


def make_edit(site: Site, value: Any) -> Edit:
  """The edit that puts `value` at `site` (value None for a delete)."""
  if not isinstance(site, tuple) or len(site) not in (2, 3) or site[0] not in _OPS:
    raise ValueError(f"a site is (op, path) or (op, path, index) with op in {', '.join(_OPS)}; got {site!r}")
  cls = _OPS[site[0]]
  d = {"op": site[0], **dict(zip(("path", "index"), site[1:]))}
  payload = [f.name for f in dataclasses.fields(cls) if f.name not in d]
  if payload:
    d[payload[0]] = value
  elif value is not None:
    raise ValueError(f"a {site[0]!r} edit takes no value, got {value!r}")
  return edit_from_dict(d)


# ---------------------------------------------------------------------------------------------------------------
# Applying.

def _apply_local(grammar: Grammar, tree: Node, edit: Edit) -> Node:
  """The edited tree, checked against the edited field's spec but not against the cross-field constraints."""
  if not isinstance(edit, tuple(_OPS.values())):
    raise IllegalEdit(f"not an edit: {edit!r}")
  if not isinstance(edit.path, str):
    raise IllegalEdit(f"{edit}: the path must be a string")
  try:
    if edit.path and isinstance(parse_path(edit.path)[-1], int):
      raise ValueError("the path must name a field, not a list item (list edits carry the index)")
    spec = grammar.spec_at(tree, edit.path)
    current = get_path(tree, edit.path)
  except ValueError as e:
    raise IllegalEdit(f"{edit}: {e}") from None
  wanted = {SetField: Choice, SwapVariant: Child}.get(type(edit), ListOf)
  if not isinstance(spec, wanted):
    raise IllegalEdit(f"{edit}: {edit.path or '<root>'} is a {type(spec).__name__} field; "
                      f"{edit.op!r} edits need a {wanted.__name__} field")
  try:
    if isinstance(edit, SetField):
      return set_path(tree, edit.path, spec.canonical(edit.value, edit.path))
    if isinstance(edit, SwapVariant):
      node = grammar.default(spec.kind, edit.variant)
      return set_path(tree, edit.path, node) if edit.path else node
    hi = len(current) + (1 if isinstance(edit, ListInsert) else 0)
    if not 0 <= edit.index < hi:
      raise ValueError(f"index {edit.index} is out of range 0..{hi - 1}")
    return set_path(tree, edit.path, spec.canonical(_edited_list(current, edit), edit.path))
  except ValueError as e:
    raise IllegalEdit(str(e) if isinstance(edit, SetField) else f"{edit}: {e}") from None


def _edited_list(current: tuple, edit: Union[ListInsert, ListDelete, ListReplace]) -> tuple:
  i = edit.index
  if isinstance(edit, ListInsert):
    return current[:i] + (edit.value,) + current[i:]
  tail = current[i + 1:]
  return current[:i] + tail if isinstance(edit, ListDelete) else current[:i] + (edit.value,) + tail


def apply(grammar: Grammar, tree: Node, edit: Edit) -> Node:
  """The new, validated tree; IllegalEdit (a ValueError) says why an edit cannot be made."""
  grammar.validate(tree)
  new = _apply_local(grammar, tree, edit)
  message = grammar.check_constraints(new)
  if message is not None:
    raise IllegalEdit(f"{edit} breaks a constraint: {message}")
  return new


# ---------------------------------------------------------------------------------------------------------------
# Enumerating.

def _candidates(grammar: Grammar, tree: Node) -> Iterator[tuple[Edit, Node]]:
  """Every edit that is legal for its own field, with its result; cross-field constraints not yet checked."""
  for path, spec, current in grammar.slots(tree):
    if isinstance(spec, Child):
      for variant in grammar.variants(spec.kind):
        if variant != current.variant:
          node = grammar.default(spec.kind, variant)
          yield SwapVariant(path, variant), (set_path(tree, path, node) if path else node)
    elif isinstance(spec, Choice):
      for v in spec.values:
        if not same(v, current):
          yield SetField(path, v), set_path(tree, path, v)
    else:
      n, values = len(current), spec.element.values
      edits: list[Edit] = []
      if n < spec.max_len:
        edits += [ListInsert(path, i, v) for i in range(n + 1) for v in values]
      if n > spec.min_len:
        edits += [ListDelete(path, i) for i in range(n)]
      edits += [ListReplace(path, i, v) for i in range(n) for v in values if not same(v, current[i])]
      for edit in edits:
        yield edit, set_path(tree, path, _edited_list(current, edit))


def legal_moves(grammar: Grammar, tree: Node) -> list[tuple[Edit, Node]]:
  """Every edit whose result validates, constraints included, in slot order, with that result (equal to
  `apply(grammar, tree, edit)`, without re-validating the tree for each edit).

  No-ops are left out, and so is every edit whose result an earlier edit already reaches (inserting "S" before
  or after another "S" is one action, not two).
  """
  grammar.validate(tree)
  seen = {tree}
  out: list[tuple[Edit, Node]] = []
  for edit, new in _candidates(grammar, tree):
    if new in seen:
      continue
    seen.add(new)
    if grammar.check_constraints(new) is None:
      out.append((edit, new))
  return out


def legal_edits(grammar: Grammar, tree: Node) -> list[Edit]:
  """The edits of `legal_moves`."""
  return [edit for edit, _ in legal_moves(grammar, tree)]


def legal_actions(grammar: Grammar, tree: Node) -> dict[Site, list[Any]]:
  """legal_edits grouped by site: {site: [value, ...]}, the PPO action space and its masks."""
  out: dict[Site, list[Any]] = {}
  for edit in legal_edits(grammar, tree):
    out.setdefault(edit.site, []).append(edit.value)
  return out
