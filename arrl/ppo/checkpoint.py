"""Saving the agent's arrays: orbax steps in a directory, or base64 text inside the loop's state.json.

A pytree is stored as its list of leaves; restoring needs a template of the same structure (the agent
always has one: its freshly built parameters and optimizer state, or an empty transition).
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from arrl.agents import SHIPPED_NETWORK


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

  def latest_step(self) -> int:
    """The newest step stored (0 when there is none)."""
    return max(self.manager.all_steps(), default=0)

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


# The shipped pretrained network (`python -m arrl.pretrain --ship`): flat parameters, the network config they
# belong to, and the model card, inside the package.
PRETRAINED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")


def pretrained_dir(init_from: str | None) -> str | None:
  """The directory of the network an agent's `init_from` names: "pretrained" the shipped one, None or "none" no
  network (from scratch), anything else itself (a --ship-to directory or another run's orbax ckpt_dir)."""
  return PRETRAINED if init_from == SHIPPED_NETWORK else None if init_from in (None, "none") else init_from


def file_sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def save_pretrained(directory: str, net_cfg: Any, params: np.ndarray, card: dict[str, Any]) -> None:
  """The network, its config and card; a warm-start portfolio already there (`arrl.fit_portfolio --ship-to`)
  stays, with its entry on the card."""
  os.makedirs(directory, exist_ok=True)
  old = load_card(directory) or {}
  if "portfolio" in old and os.path.exists(os.path.join(directory, old["portfolio"]["file"])):
    card = {**card, "portfolio": old["portfolio"]}
  path = os.path.join(directory, "params.npz")
  np.savez_compressed(path, params=np.asarray(params, np.float32),
                      net_config=np.frombuffer(json.dumps(dataclasses.asdict(net_cfg)).encode(), np.uint8))
  write_card(directory, {**card, "net_config": dataclasses.asdict(net_cfg), "parameters": int(np.size(params)),
                          "params_sha256": file_sha256(path)})


def write_card(directory: str, card: dict[str, Any]) -> None:
  """card.json and its readable MODEL_CARD.md in a shipped network's directory."""
  with open(os.path.join(directory, "card.json"), "w") as f:
    json.dump(card, f, indent=1)
    f.write("\n")
  lines = ["# Model card: the pretrained PPO search policy", "",
           "Meta-trained by `arrl.pretrain` (see its docstring and README's PPO section); loaded by default by "
           "`agent=\"ppo\"` / `--agent ppo` (`--agent-init none` starts from scratch instead).", "",
           *[f"- **{k}**: `{json.dumps(v)}`" for k, v in card.items()], ""]
  with open(os.path.join(directory, "MODEL_CARD.md"), "w") as f:
    f.write("\n".join(lines))


def load_card(directory: str) -> dict[str, Any] | None:
  """The model card `save_pretrained` wrote in `directory` (None when there is none)."""
  path = os.path.join(directory, "card.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


# NetConfig fields added after networks were shipped, with the value a network saved before them has.
LEGACY_NET_CONFIG = {"surrogate": False, "site_guide_from_values": False, "neighbour_guide": False}


def stored_net_config(directory: str) -> dict[str, Any] | None:
  """The network config of the parameters `save_pretrained` wrote in `directory` (None when there are none)."""
  path = os.path.join(directory, "params.npz")
  if not os.path.exists(path):
    return None
  with np.load(path) as z:
    return {**LEGACY_NET_CONFIG, **json.loads(z["net_config"].tobytes().decode())}


def load_pretrained(directory: str, net_cfg: Any, scratch: str = "with --agent-init none") -> np.ndarray:
  """The flat parameters stored in `directory` (see save_pretrained); one clear error when they belong to
  another network config or are missing (`scratch` says how the caller starts without them)."""
  path = os.path.join(directory, "params.npz")
  stored = stored_net_config(directory)
  if stored is None:
    raise ValueError(f"no pretrained PPO network at {path} (train one with `python -m arrl.pretrain --ship`, "
                     f"or start from scratch {scratch})")
  with np.load(path) as z:
    params = z["params"]
  if stored != dataclasses.asdict(net_cfg):
    diff = {k: (stored.get(k), v) for k, v in dataclasses.asdict(net_cfg).items() if stored.get(k) != v}
    raise ValueError(f"{path}: the pretrained network has another config ({', '.join(f'{k}={a} here {b}' for k, (a, b) in diff.items())}); "
                     f"use the same network options or start from scratch {scratch}")
  return params
