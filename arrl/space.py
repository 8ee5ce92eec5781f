"""A search space: a grammar plus its root kind, with the operations a search algorithm needs."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from arrl import edits
from arrl.grammar import Child, Choice, Constraint, Grammar, same
from arrl.tree import Node, Value, flatten, get_path, set_path


def _depth(path: str) -> int:
  return path.count(".") + 1 if path else 0


class Space:
  """Trees rooted at `root_kind`: default, validation, legal edits/actions, apply, sampling, flat params."""

  def __init__(self, grammar: Grammar, root_kind: str, root_variant: str | None = None):
    grammar.fields(root_kind, root_variant or grammar.variants(root_kind)[0])  # fail early on unknown names
    self.grammar = grammar
    self.root_kind = root_kind
    self.root_variant = root_variant

  def default(self) -> Node:
    return self.grammar.default(self.root_kind, self.root_variant)

  def _check_root(self, tree: Any) -> None:
    if not isinstance(tree, Node) or tree.kind != self.root_kind:
      raise ValueError(f"expected a {self.root_kind!r} tree, got {tree!r:.80}")

  def validate(self, tree: Node) -> None:
    self._check_root(tree)
    self.grammar.validate(tree)

  def legal_edits(self, tree: Node) -> list[edits.Edit]:
    self._check_root(tree)
    return edits.legal_edits(self.grammar, tree)

  def legal_moves(self, tree: Node) -> list[tuple[edits.Edit, Node]]:
    self._check_root(tree)
    return edits.legal_moves(self.grammar, tree)

  def legal_actions(self, tree: Node) -> dict[edits.Site, list[Any]]:
    self._check_root(tree)
    return edits.legal_actions(self.grammar, tree)

  def apply(self, tree: Node, edit: edits.Edit) -> Node:
    self._check_root(tree)
    return edits.apply(self.grammar, tree, edit)

  def sample(self, rng: np.random.Generator, sweeps: int = 2) -> Node:
    """A random valid tree: Gibbs-style sweeps from the default over every slot, parents first.

    Each slot takes the first value of a random permutation of its grid that keeps the tree valid (drawing
    the current value keeps it), so unconstrained fields come out uniform and the result is always valid.
    """
    tree = self.default()
    for _ in range(sweeps):
      slots = [path for path, _, _ in self.grammar.slots(tree)]
      order = sorted(rng.permutation(len(slots)), key=lambda i: _depth(slots[i]))
      for i in order:
        tree = self._resample(rng, tree, slots[i])
    return tree

  def _resample(self, rng: np.random.Generator, tree: Node, path: str) -> Node:
    try:  # an earlier variant swap may have removed or retyped this slot
      spec, current = self.grammar.spec_at(tree, path), get_path(tree, path)
    except ValueError:
      return tree
    for value in self._proposals(rng, spec):
      if isinstance(spec, Child):
        if value == current.variant:
          return tree
        value = self.grammar.default(spec.kind, value)
      elif same(value, current):
        return tree
      new = set_path(tree, path, value) if path else value
      if self.grammar.check_constraints(new) is None:
        return new
    return tree

  def _proposals(self, rng: np.random.Generator, spec: Any) -> Iterable[Value]:
    if isinstance(spec, Child):
      names = self.grammar.variants(spec.kind)
      return [names[i] for i in rng.permutation(len(names))]
    if isinstance(spec, Choice):
      return [spec.values[i] for i in rng.permutation(len(spec.values))]
    values = spec.element.values  # ListOf: a few random lists, uniform length then uniform elements
    return [tuple(values[j] for j in rng.integers(len(values), size=rng.integers(spec.min_len, spec.max_len + 1)))
            for _ in range(8)]

  def to_params(self, tree: Node) -> dict[str, Value]:
    """{path: value} (child modules as {path: variant}); the flat view for baselines and features."""
    self.validate(tree)
    return flatten(tree)

  def from_params(self, params: Mapping[str, Value]) -> Node:
    """Inverse of to_params; missing paths keep their defaults. Raises ValueError on unknown/illegal entries."""
    tree = self.default()
    for path in sorted(params, key=_depth):  # variants before the fields they own
      spec, value = self.grammar.spec_at(tree, path), params[path]
      if isinstance(spec, Child):
        current = get_path(tree, path)
        value = current if value == current.variant else self.grammar.default(spec.kind, value)
        tree = set_path(tree, path, value) if path else value
      else:
        tree = set_path(tree, path, spec.canonical(value, path))
    self.validate(tree)
    return tree

  @classmethod
  def from_dict(cls, spec: Mapping[str, Any], constraints: Iterable[Constraint] = ()) -> "Space":
    """A flat space from plain data: {name: {"choices": [...], "default": v, "ordinal": bool}}.

    The default is the first choice unless given. Malformed specs raise ValueError naming the key.
    """
    if not isinstance(spec, Mapping) or not spec:
      raise ValueError(f"a flat space spec must be a non-empty dict {{name: {{'choices': [...]}}}}, got {spec!r:.80}")
    fields: dict[str, Choice] = {}
    for name, entry in spec.items():
      if not isinstance(entry, Mapping):
        raise ValueError(f"{name!r}: expected a dict with 'choices', got {entry!r:.80}")
      unknown = sorted(set(entry) - {"choices", "default", "ordinal"})
      if unknown:
        raise ValueError(f"{name!r}: unknown key(s) {', '.join(map(str, unknown))}; allowed: choices, default, ordinal")
      choices = entry.get("choices")
      if not isinstance(choices, (list, tuple)) or not choices:
        raise ValueError(f"{name!r}: 'choices' must be a non-empty list, got {choices!r:.80}")
      if not isinstance(entry.get("ordinal", False), bool):
        raise ValueError(f"{name!r}: 'ordinal' must be true or false, got {entry['ordinal']!r}")
      try:
        fields[name] = Choice(tuple(choices), entry.get("default"), entry.get("ordinal", False))
      except ValueError as e:
        raise ValueError(f"{name!r}: {e}") from None
    grammar = Grammar()
    grammar.add_variant("params", "flat", fields)
    for fn in constraints:
      grammar.add_constraint(fn)
    return cls(grammar, "params")
