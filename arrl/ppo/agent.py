"""PPOAgent: proposes composite edits (site, then value; up to M, until STOP) and learns from the trials.

    agent = PPOAgent(seed=0, ckpt_dir="runs/x/ppo")        # or make_agent("ppo", seed=0, ...)
    arrl.search(space, objective, agent="ppo", max_trials=200)

Options (all with defaults) are the fields of AgentConfig, NetConfig, PPOConfig and RewardConfig, passed
flat: PPOAgent(seed=1, d_model=32, update_every=16, reward_clip=3.0).

Persistence. `state_dict()` is JSON: sampling RNG, update RNG key, counters, the transitions since the last
update and those still pending (proposed, not yet observed), plus the network: with `ckpt_dir`, an orbax
step number (parameters, optimizer state, RNG key and the batch are saved there at every update, numbered after
any steps already in the directory, e.g. those of a run whose state was rebuilt from its ledger); without,
the parameters and optimizer state themselves as base64 text. Restoring it gives the identical next
proposal. `init_from` is where the network starts: "pretrained" (the default) the meta-trained network shipped
in arrl/ppo/pretrained (`python -m arrl.pretrain`), None or "none" a fresh random one (from scratch), a directory
written by `python -m arrl.pretrain --ship-to`, else another run's `ckpt_dir` (newest step). A pretrained network
brings its own network config (e.g. with a surrogate) unless network options are given, which must then match it.

The agent runs its network on the CPU by default (`device="cpu"`): the GPU belongs to the trials.
"""
from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from arrl import tree as tree_lib
from arrl.agents import SHIPPED_NETWORK
from arrl.agents.base import Outcome, Proposal, SearchState, rng_state, set_rng_state
from arrl.ppo import network, rollout
from arrl.ppo.batch import Actions, Transition, empty_tokens, remap, stack_tokens, stack_transitions
from arrl.ppo.checkpoint import (OrbaxStore, load_pretrained, pack, pretrained_dir, stored_net_config, unpack,
                                 unpack_leaves)
from arrl.ppo.features import FeatureConfig, HistoryStats, observation, shuffle_rows
from arrl.ppo.reward import RewardConfig, reward
from arrl.ppo.update import PPOConfig, make_optimizer, ppo_update

STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class AgentConfig:
  history: int = 32            # K: past trials the encoder reads
  update_every: int = 8        # N: trials per PPO update; 0: no updates within the run (the network stays as loaded)
  ent_start: float = 0.01      # entropy bonus, annealed linearly over the budget used
  ent_end: float = 0.001
  stop_bias: float = 1.0       # initial extra logit of STOP: P(STOP after an edit) starts near sigmoid(1) = 0.73
  prior: float = 4.0           # initial weight of a candidate's regret in its logit (network.PolicyValueNet)
  device: str = "cpu"          # where the network runs ("cpu", "gpu", or "default")
  hash_shuffle: bool = False   # relabel the hash rows by a permutation drawn from the seed's RNG for this run (a
                               # check of what a network knows of particular strings; `arrl.pretrain --hash-shuffle`
                               # trains that way). Off for a network trained shuffled too: to it the identity is
                               # one relabelling among all the others it was trained on.

  def __post_init__(self) -> None:
    if self.history < 1 or self.update_every == 1 or self.update_every < 0:
      raise ValueError(f"history must be >= 1 and update_every 0 (off) or >= 2, got {self.history}, "
                       f"{self.update_every}")
    if min(self.ent_start, self.ent_end) < 0:
      raise ValueError(f"entropy coefficients must be >= 0, got {self.ent_start}, {self.ent_end}")


_CONFIGS = (AgentConfig, network.NetConfig, PPOConfig, RewardConfig)


def split_options(options: dict[str, Any]) -> tuple[AgentConfig, network.NetConfig, PPOConfig, RewardConfig]:
  known = {f.name: cls for cls in _CONFIGS for f in dataclasses.fields(cls)}
  unknown = sorted(set(options) - set(known))
  if unknown:
    raise ValueError(f"unknown ppo option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
  return tuple(cls(**{k: v for k, v in options.items() if known[k] is cls}) for cls in _CONFIGS)


def _device(name: str) -> jax.Device | None:
  if name == "default":
    return None
  try:
    return jax.devices(name)[0]
  except RuntimeError as e:
    raise ValueError(f"ppo device {name!r} is not available ({e}); use 'cpu', 'gpu' or 'default'") from None


class PPOAgent:
  """Each proposal: encode the state once, then pick a site (or STOP) and a value for it, up to M times, each
  from a categorical over the legal candidates (programs measured already or in flight are masked out).
  Each finished trial's reward goes into a buffer; every `update_every` trials one jitted PPO update."""
  name = "ppo"

  def __init__(self, seed: int = 0, ckpt_dir: str | None = None, init_from: str | None = SHIPPED_NETWORK,
               **options: Any):
    self.options = dict(options)
    self.cfg, self.net_cfg, self.ppo_cfg, self.reward_cfg = split_options(options)
    pretrained = pretrained_dir(init_from)
    stored = stored_net_config(pretrained) if pretrained else None
    if stored is not None and not set(options) & {f.name for f in dataclasses.fields(network.NetConfig)}:
      self.net_cfg = network.NetConfig(**stored)  # no network option given: the pretrained network's own
    if self.cfg.update_every % self.ppo_cfg.minibatches:
      raise ValueError(f"update_every={self.cfg.update_every} must be a multiple of "
                       f"minibatches={self.ppo_cfg.minibatches}")
    self.feat_cfg = FeatureConfig(buckets=self.net_cfg.buckets, history=self.cfg.history,
                                  max_edits=self.net_cfg.max_edits, reward=self.reward_cfg)
    self.device = _device(self.cfg.device)
    with self._on_device():
      self.params = jnp.asarray(network.init_params(self.net_cfg, seed, self.cfg.stop_bias, self.cfg.prior))
      self.opt_state = make_optimizer(self.ppo_cfg).init(self.params)
      self.key = np.asarray(jax.random.PRNGKey(seed + 1), np.uint32)
    self.rng = np.random.default_rng(seed)
    # drawn first from the sampling RNG, as `arrl.pretrain.run_episodes` does, so both make the same trials
    self.perm = shuffle_rows(self.rng, self.net_cfg.buckets) if self.cfg.hash_shuffle else None
    self.store = OrbaxStore(ckpt_dir) if ckpt_dir else None
    # Update u is checkpoint step step_base + u. A fresh agent numbers after the steps already there (a state
    # rebuilt from the ledger starts again at 0 updates): below them, the store's rotation would drop its newest.
    self.step_base = self.store.latest_step() if self.store is not None else 0
    self.proposed = 0                             # proposals made (their ids)
    self.updates = 0
    self.pending: dict[int, Transition] = {}      # proposal id -> transition awaiting its reward
    self.in_flight: dict[int, Any] = {}           # proposal id -> its program (not proposed again meanwhile)
    self.buffer: list[Transition] = []            # rewarded transitions since the last update
    self.entropies: collections.deque = collections.deque(maxlen=self.cfg.update_every)  # nats per decision
    self.metrics: dict[str, float] = {}
    self._weights: str | None = None              # cached packed network for state_dict without ckpt_dir
    if init_from == SHIPPED_NETWORK or stored is not None:
      self.params = self._to_device(jnp.asarray(load_pretrained(pretrained, self.net_cfg)))
    elif init_from and init_from != "none":
      self.params = self._to_device(OrbaxStore(init_from).restore(None, {"params": self.params})["params"])

  def _on_device(self):
    return jax.default_device(self.device)

  def _to_device(self, tree: Any) -> Any:
    return jax.device_put(tree, self.device) if self.device is not None else tree

  # ---- proposing -----------------------------------------------------------------------------------------
  def propose(self, state: SearchState) -> Proposal:
    return self.propose_batch(state, 1)[0]

  def propose_batch(self, state: SearchState, n: int) -> list[Proposal]:
    """Up to `n` proposals of distinct programs, none measured or in flight already (fewer only when the
    policy finds no new program in 20 * n samples, e.g. an exhausted space: then at least one, measured
    already, which the loop serves from its ledger), for parallel workers."""
    if n < 1:
      raise ValueError(f"propose_batch needs n >= 1, got {n}")
    with self._on_device():
      stats = HistoryStats.of(state, self.reward_cfg, self.in_flight.values())
      search = rollout.Search.of(state, stats, self.feat_cfg, self.rng, self.perm)
      h, value = rollout.encode(self.net_cfg, self.params, [search])
      out: list[Proposal] = []
      seen = set(stats.measured)
      tries = 20 * n
      for attempt in range(tries):
        s = rollout.sample(self.net_cfg, self.feat_cfg, self.params, [search], h, value, [True])[0]
        prop, tr = s.proposal, s.transition
        last_chance = not out and attempt == tries - 1  # nothing new found: return this one, measured or not
        if prop.tree in seen and not last_chance:
          continue
        seen.add(prop.tree)
        self.pending[self.proposed], self.in_flight[self.proposed] = tr, prop.tree
        out.append(dataclasses.replace(prop, info={"ppo_id": self.proposed, "logp": float(tr.logp),
                                                   "value": float(tr.value), "entropy": s.entropy}))
        self.entropies.append(s.entropy / s.decisions)
        self.proposed += 1
        if len(out) == n:
          break
    return out

  # ---- learning ------------------------------------------------------------------------------------------
  def observe(self, state: SearchState, outcome: Outcome) -> None:
    pid = (outcome.info or {}).get("ppo_id")
    tr = self.pending.pop(pid, None)
    self.in_flight.pop(pid, None)
    if tr is None or not self.cfg.update_every:  # not proposed by this agent (or already observed), or frozen
      return
    self.buffer.append(tr._replace(reward=np.float32(reward(outcome, self.reward_cfg))))
    if len(self.buffer) >= self.cfg.update_every:
      self._update(state)

  def _update(self, state: SearchState) -> None:
    with self._on_device():
      batch = stack_transitions(self.buffer)
      stats = HistoryStats.of(state, self.reward_cfg, self.in_flight.values())
      obs = remap(observation(state, stats, self.feat_cfg), self.perm)
      self.key, sub = (np.asarray(k, np.uint32) for k in jax.random.split(self.key))
      frac = min(1.0, max(0.0, float(state.budget_used)))
      ent_coef = np.float32(self.cfg.ent_start + (self.cfg.ent_end - self.cfg.ent_start) * frac)
      self.params, self.opt_state, metrics = ppo_update(self.net_cfg, self.ppo_cfg, self.params, self.opt_state,
                                                        batch, stack_tokens([obs], obs.kind.shape[0]), sub, ent_coef)
    self.metrics = {k: float(v) for k, v in metrics.items()}
    self.buffer = []
    self.updates += 1
    self._weights = None
    if self.store is not None:
      self.store.save(self.step_base + self.updates, {"params": self.params, "opt_state": self.opt_state, "key": self.key,
                                     "rng": np.frombuffer(json.dumps(rng_state(self.rng)).encode(), np.uint8),
                                     "batch": batch})

  def entropy(self) -> float | None:
    """Mean policy entropy per decision over the latest proposals (nats), None before the first."""
    return float(np.mean(self.entropies)) if self.entropies else None

  # ---- persistence ---------------------------------------------------------------------------------------
  def _transition_template(self) -> Transition:
    M = self.net_cfg.max_edits
    toks = empty_tokens((M, 1))
    z = np.zeros(M, np.int32)
    return Transition(obs=empty_tokens((1,)), act=Actions(toks, z, toks, z, z.astype(bool), z.astype(bool)),
                      logp=np.float32(0), value=np.float32(0), reward=np.float32(0))

  def _unpack_transition(self, text: str) -> Transition:
    # token axes vary in length, so the template fixes the structure only; shapes come from the data
    return jax.tree.unflatten(jax.tree.structure(self._transition_template()), unpack_leaves(text))

  def state_dict(self) -> dict:
    if self.store is not None:
      weights = {"orbax_step": self.step_base + self.updates if self.updates else None, "orbax_base": self.step_base}
    else:
      if self._weights is None:
        self._weights = pack({"params": self.params, "opt_state": self.opt_state})
      weights = {"packed": self._weights}
    return {"version": STATE_VERSION, "options": self.options, "rng": rng_state(self.rng),
            "key": self.key.tolist(), "proposed": self.proposed, "updates": self.updates,
            "pending": {str(k): pack(v) for k, v in self.pending.items()},
            "in_flight": {str(k): tree_lib.to_json(t) for k, t in self.in_flight.items()},
            "buffer": [pack(t) for t in self.buffer], "entropies": list(self.entropies), "metrics": self.metrics,
            "weights": weights}

  def load_state_dict(self, d: dict) -> None:
    if d.get("version") != STATE_VERSION:
      raise ValueError(f"ppo state version {d.get('version')!r} is not {STATE_VERSION}")
    if d["options"] != self.options:
      raise ValueError(f"ppo state was saved with options {d['options']}, this agent has {self.options}")
    weights = d["weights"]
    template = {"params": self.params, "opt_state": self.opt_state}
    if "packed" in weights:
      restored = unpack(weights["packed"], template)
    elif weights.get("orbax_step") is not None:
      if self.store is None:
        raise ValueError("ppo state points to an orbax checkpoint but this agent has no ckpt_dir")
      restored = self.store.restore(weights["orbax_step"], template)
    else:
      restored = template  # saved before the first update: the freshly built network is the same one
    if "orbax_step" in weights:   # states written before orbax_base numbered the steps from 0
      self.step_base = weights.get("orbax_base", 0)
    self.params, self.opt_state = self._to_device(restored["params"]), self._to_device(restored["opt_state"])
    set_rng_state(self.rng, d["rng"])
    self.key = np.asarray(d["key"], np.uint32)
    self.proposed, self.updates = d["proposed"], d["updates"]
    self.pending = {int(k): self._unpack_transition(v) for k, v in d["pending"].items()}
    self.in_flight = {int(k): tree_lib.from_json(t) for k, t in d["in_flight"].items()}
    self.buffer = [self._unpack_transition(v) for v in d["buffer"]]
    self.entropies = collections.deque(d["entropies"], maxlen=self.cfg.update_every)
    self.metrics = dict(d["metrics"])
    self._weights = weights.get("packed")
