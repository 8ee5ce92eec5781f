"""Named implementations of one module kind (MLPs, norms, attention, ...): the one registry helper.

A Program names its modules by string (ModelConfig.mlp = "relu2"); a `Registry` maps those names to the code
that builds them. Registries are process-wide, so a trial worker knows a variant only if something it imports
registers it (arrl's plugins). `scoped()` undoes every registration made inside it (tests, notebooks).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T]):
  """A read-only mapping name -> implementation (callable unless `callables=False`), extended by `register`."""

  def __init__(self, kind: str, items: Mapping[str, T] | None = None, *, callables: bool = True):
    self.kind = kind
    self.callables = callables
    self._items: dict[str, T] = {}
    for name, value in (items or {}).items():
      self.register(name, value)

  def __getitem__(self, name: str) -> T:
    return self._items[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._items)

  def __len__(self) -> int:
    return len(self._items)

  def register(self, name: str, value: T) -> None:
    """Adds `name`; registering an equal value again is a no-op, another one under a taken name raises."""
    if not isinstance(name, str) or not name:
      raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
    if self.callables and not callable(value):
      raise ValueError(f"{self.kind} {name!r} must be callable, got {type(value).__name__}")
    if name in self._items and self._items[name] != value:  # functions compare by identity
      raise ValueError(f"{self.kind} {name!r} is already registered with a different implementation")
    self._items[name] = value

  def unregister(self, name: str) -> None:
    self.lookup(name)
    del self._items[name]

  def lookup(self, name: str) -> T:
    """The implementation of `name`, or ValueError listing the known names."""
    if name not in self._items:
      raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}")
    return self._items[name]

  @contextlib.contextmanager
  def scoped(self) -> Iterator["Registry[T]"]:
    """Registrations (and unregistrations) made inside the block are undone when it exits."""
    saved = dict(self._items)
    try:
      yield self
    finally:
      self._items = saved
