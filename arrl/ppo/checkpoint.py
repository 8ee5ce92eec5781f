"""Saving the agent's arrays: orbax steps in a directory, or base64 text inside the loop's state.json.

A pytree is stored as its list of leaves; restoring needs a template of the same structure (the agent
always has one: its freshly built parameters and optimizer state, or an empty transition).
"""
from __future__ import annotations

import base64
import io
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def pack(tree: Any) -> str:
  """Exact, JSON-able text of a pytree's leaves (npz, base64)."""
  buf = io.BytesIO()
  np.savez(buf, *[np.asarray(x) for x in jax.tree.leaves(tree)])
  return base64.b64encode(buf.getvalue()).decode("ascii")


def unpack_leaves(text: str) -> list[np.ndarray]:
  with np.load(io.BytesIO(base64.b64decode(text))) as z:
    return [z[f"arr_{i}"] for i in range(len(z.files))]


def unpack(text: str, template: Any) -> Any:
  """Inverse of `pack`, into the structure (and shapes) of `template`."""
  return from_leaves(unpack_leaves(text), template)


def from_leaves(leaves: list[np.ndarray], template: Any) -> Any:
  want = jax.tree.leaves(template)
  if len(leaves) != len(want) or any(np.shape(a) != np.shape(b) for a, b in zip(leaves, want)):
    got = [np.shape(a) for a in leaves]
    raise ValueError(f"stored arrays do not fit this agent's network ({len(got)} arrays of shapes {got[:4]}...; "
                     f"expected {len(want)} of shapes {[np.shape(b) for b in want][:4]}...): "
                     "was it saved with other network options?")
  return jax.tree.unflatten(jax.tree.structure(template), [np.asarray(a) for a in leaves])


def _leaf_dict(tree: Any) -> dict[str, np.ndarray]:
  return {f"{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))}


class OrbaxStore:
  """Numbered checkpoints (one per PPO update) under `directory`; keeps the newest `keep`."""

  def __init__(self, directory: str, keep: int = 3):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=False))

  def save(self, step: int, items: dict[str, Any]) -> None:
    """Saves {name: pytree} as step `step`, replacing a step of that number (a re-done update on resume)."""
    if step in self.manager.all_steps():
      self.manager.delete(step)
    self.manager.save(step, args=ocp.args.StandardSave({k: _leaf_dict(v) for k, v in items.items()}))
    self.manager.wait_until_finished()

  def restore(self, step: int | None, templates: dict[str, Any]) -> dict[str, Any]:
    """{name: pytree} of step `step` (None = the newest), shaped like `templates`."""
    steps = self.manager.all_steps()
    if not steps:
      raise ValueError(f"no PPO checkpoint in {self.directory}")
    step = max(steps) if step is None else step
    if step not in steps:
      raise ValueError(f"PPO checkpoint step {step} is not in {self.directory} (steps there: {sorted(steps)})")
    stored = self.manager.restore(step, args=ocp.args.StandardRestore())
    missing = set(templates) - set(stored)
    if missing:
      raise ValueError(f"PPO checkpoint step {step} in {self.directory} lacks {', '.join(sorted(missing))}")
    return {k: from_leaves([stored[k][n] for n in sorted(stored[k])], t) for k, t in templates.items()}
