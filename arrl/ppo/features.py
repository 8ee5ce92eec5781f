"""Tokens of the program, the recent trials and the candidate choices.

Strings (field paths, values, sites, statuses) are hashed into rows of one embedding table, so a field or
variant the network never saw still gets an embedding (and shares rows through its field name and value
with related ones). Each string takes two rows from two hash functions, so a collision of one rarely
confuses two strings. Numbers also go in as numeric features (sign, log-magnitude, rank on an ordinal
ladder, ratio to the current value) so unseen grid values land near their neighbours.

Besides the raw last-K trials, each candidate carries what the history says about the setting it leads to
(how many measured programs had it, how far the best and the mean of them were from the current best: its
"regret", its rank among the field's values) and whether its result was measured already; the global token
carries the budget used, the noise level and how much of the neighbourhood is measured. These numbers mean
the same in any space, so a policy meta-trained on some spaces (`arrl.pretrain`) runs unchanged on a new one.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from typing import Any, Iterable, Sequence

import numpy as np

from arrl.edits import OPS, Edit, edit_from_dict
from arrl.grammar import Choice, ListOf
from arrl.ppo.batch import (HASH_SLOTS, KIND_GLOBAL, KIND_PROGRAM, KIND_SITE, KIND_STOP, KIND_TRIAL, KIND_VALUE,
                            NUM_FEATS, Tokens, bucket, hash_permutation)
from arrl.ppo.reward import FAILED, RewardConfig, noise_unit, reward, squash, trial_score
from arrl.trial import Status
from arrl.tree import Node, flatten, get_path

Site = tuple


@functools.lru_cache(maxsize=1 << 16)  # the same few thousand strings recur at every step
def hash_ids(text: str, buckets: int) -> tuple[int, int]:
  """Two rows in 1..buckets-1 (row 0 means "empty slot"); stable across processes, unlike hash()."""
  h = hashlib.blake2b(text.encode(), digest_size=8).digest()
  a, b = int.from_bytes(h[:4], "little"), int.from_bytes(h[4:], "little")
  return 1 + a % (buckets - 1), 1 + b % (buckets - 1)


# The strings that mean the same in every space (the tokens' markers, a trial's status, an edit's op): a hash
# shuffle leaves their rows in place, so a network trained with one still knows a kept trial from a crash.
STRUCTURAL = ("<global>", "<stop>", *(f"status:{s}" for s in Status), *(f"op:{op}" for op in OPS))


def shuffle_rows(rng: np.random.Generator, buckets: int) -> np.ndarray:
  """One search's relabelling of the hash rows of every string but the STRUCTURAL ones (`--hash-shuffle`)."""
  return hash_permutation(rng, buckets, frozenset(r for s in STRUCTURAL for r in hash_ids(s, buckets)))


def value_str(v: Any) -> str:
  """A scalar's identity as text (repr keeps True, 1 and 1.0 apart)."""
  if isinstance(v, tuple):
    return "[" + ",".join(value_str(x) for x in v) + "]"
  return repr(v)


def site_str(site: Site) -> str:
  return f"{site[0]}:{site[1]}" + (f"[{site[2]}]" if len(site) > 2 else "")


def as_edit(e: Any) -> Edit:
  """An edit from what an outcome carries: an Edit, its dict, or its JSON text."""
  if hasattr(e, "site"):
    return e
  if isinstance(e, str):
    e = json.loads(e)
  return edit_from_dict(e)


def scalar_feats(v: Any) -> list[float]:
  """[is_number, sign, log10 magnitude / 4, is_bool, bool value, is_string]."""
  if isinstance(v, bool):
    return [0.0, 0.0, 0.0, 1.0, float(v), 0.0]
  if isinstance(v, (int, float)):
    mag = 0.0 if v == 0 else max(-3.0, min(3.0, math.log10(abs(v)) / 4))
    return [1.0, float(np.sign(v)), mag, 0.0, 0.0, 0.0]
  return [0.0, 0.0, 0.0, 0.0, 0.0, 1.0 if isinstance(v, str) else 0.0]


def _rank(spec: Any, v: Any) -> float:
  """Position on an ordinal ladder in [0, 1]; 0 for unordered grids and non-grid values."""
  if isinstance(spec, ListOf):
    spec = spec.element
  if isinstance(spec, Choice) and spec.ordinal and spec.index(v) is not None:
    return spec.rank(v)
  return 0.0


def _log_ratio(v: Any, cur: Any) -> float:
  nums = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (v, cur))
  if not nums or v == 0 or cur == 0 or (v > 0) != (cur > 0):
    return 0.0
  return max(-3.0, min(3.0, math.log(v / cur))) / 3


class _Builder:
  """Accumulates tokens row by row."""

  def __init__(self, buckets: int):
    self.buckets = buckets
    self.ids: list[list[int]] = []
    self.nums: list[list[float]] = []
    self.kinds: list[int] = []

  def add(self, kind: int, strings: Iterable[str], nums: Sequence[float] = (), single: Iterable[str] = ()) -> None:
    """One token: each of `strings` takes two hash rows, each of `single` one."""
    ids = [i for s in strings for i in hash_ids(s, self.buckets)] + [hash_ids(s, self.buckets)[0] for s in single]
    if len(ids) > HASH_SLOTS or len(nums) > NUM_FEATS:
      raise ValueError(f"token too large: {len(ids)} ids (max {HASH_SLOTS}), {len(nums)} numbers (max {NUM_FEATS})")
    self.ids.append(ids + [0] * (HASH_SLOTS - len(ids)))
    self.nums.append(list(nums) + [0.0] * (NUM_FEATS - len(nums)))
    self.kinds.append(kind)

  def tokens(self, size: int | None = None, legal: Sequence[bool] | None = None) -> Tokens:
    n = len(self.kinds)
    size = n if size is None else size
    ids = np.zeros((size, HASH_SLOTS), np.int32)
    nums = np.zeros((size, NUM_FEATS), np.float32)
    kind = np.zeros(size, np.int32)
    mask = np.zeros(size, bool)
    if n:
      ids[:n], nums[:n], kind[:n] = self.ids, self.nums, self.kinds
      mask[:n] = True if legal is None else legal
    return Tokens(ids, nums, kind, mask, np.zeros(size, np.float32))


# ---------------------------------------------------------------------------------------------------------------
# History statistics.

def setting(tree: Node, path: str) -> str:
  """The value at `path` as text (a module's variant for a module), the key of the per-setting statistics."""
  v = get_path(tree, path)
  return value_str(v.variant if isinstance(v, Node) else v)


Key = tuple[str, str]   # a setting: (path, value as text)


@functools.lru_cache(maxsize=8192)
def _settings(tree: Node) -> tuple[Key, ...]:
  """Every (path, value as text) of a program; cached, as the whole history is read at every proposal."""
  return tuple((path, value_str(v)) for path, v in flatten(tree).items())


@dataclasses.dataclass
class Tally:
  """The history's part of `HistoryStats`, grown by each new outcome once: a caller that keeps one across the
  steps of a search (`arrl.pretrain`) pays per step for the new trial, not for the whole history again."""
  seen: int = 0                        # outcomes of the history added so far
  rewards: list[float] = dataclasses.field(default_factory=list)
  measured: set[Node] = dataclasses.field(default_factory=set)
  count: dict[Key, int] = dataclasses.field(default_factory=dict)
  best: dict[Key, float] = dataclasses.field(default_factory=dict)
  total: dict[Key, float] = dataclasses.field(default_factory=dict)
  scored: dict[Key, int] = dataclasses.field(default_factory=dict)
  edited: dict[str, int] = dataclasses.field(default_factory=dict)
  edit_strings: list[tuple[tuple[str, ...], tuple[str, ...]]] = dataclasses.field(default_factory=list)

  def add_program(self, tree: Node, score: float | None) -> None:
    for key in _settings(tree):
      self.count[key] = self.count.get(key, 0) + 1
      self.best[key] = min(self.best.get(key, math.inf), math.inf if score is None else score)
      if score is not None:
        self.total[key] = self.total.get(key, 0.0) + score
        self.scored[key] = self.scored.get(key, 0) + 1

  def extend(self, history: Sequence[Any], cfg: RewardConfig) -> None:
    """Adds the outcomes after the ones already seen (a history only grows)."""
    if len(history) < self.seen:
      raise ValueError(f"a tally of {self.seen} outcomes cannot follow a history of {len(history)}")
    for outcome in history[self.seen:]:
      self.rewards.append(reward(outcome, cfg))
      self.measured.add(outcome.tree)
      edits = [as_edit(e) for e in outcome.edits]
      for e in edits:
        self.edited[e.site[1]] = self.edited.get(e.site[1], 0) + 1
      sites = tuple(site_str(e.site) for e in edits)
      self.edit_strings.append((sites, tuple(f"{s}={value_str(e.value)}" for s, e in zip(sites, edits))))
      self.add_program(outcome.tree, trial_score(outcome))
    self.seen = len(history)

  def copy(self) -> "Tally":
    return Tally(self.seen, list(self.rewards), set(self.measured), dict(self.count), dict(self.best),
                 dict(self.total), dict(self.scored), dict(self.edited), list(self.edit_strings))


@dataclasses.dataclass
class HistoryStats:
  """What the history says: each trial's reward, which programs were measured, and for every setting
  (path, value) seen, how many measured programs had it and the best score among them."""
  rewards: list[float]
  measured: set[Node]
  count: dict[Key, int]
  best: dict[Key, float]     # inf when every program with the setting failed
  total: dict[Key, float]    # sum of the finite scores of the programs with the setting
  scored: dict[Key, int]     # how many of them had a finite score
  edited: dict[str, int]     # path -> trials whose edits changed it
  edit_strings: list[tuple[tuple[str, ...], tuple[str, ...]]]  # per trial: its edits' sites and site=value texts
  best_score: float | None
  unit: float                # one noise unit (see reward.noise_unit)
  cfg: RewardConfig
  # score -> regret: the same few scores are asked for by every site and value token of a step
  _regrets: dict[float, float] = dataclasses.field(default_factory=dict, init=False, repr=False)

  @classmethod
  def of(cls, state: Any, cfg: RewardConfig, in_flight: Iterable[Node] = (), tally: Tally | None = None) -> "HistoryStats":
    """`in_flight`: programs proposed but not finished yet; they count as measured. `tally`: one kept across the
    calls of one search (brought up to date here), else the history is read whole."""
    tally = tally if tally is not None else Tally()
    tally.extend(state.history, cfg)
    t = tally.copy()
    t.add_program(state.current, state.best_score)  # the current program counts once more, with the best score
    t.measured.update((state.current, *in_flight))
    unit = noise_unit(state.best_score, state.sigma, cfg) if state.best_score is not None else 1.0
    return cls(t.rewards, t.measured, t.count, t.best, t.total, t.scored, t.edited, t.edit_strings, state.best_score,
               unit, cfg)

  def regret_of(self, score: float) -> float:
    """A score's regret against the current best, squashed and scaled like `regret` (memoised per score)."""
    if score not in self._regrets:
      gap = min(0.0, (self.best_score - score) / self.unit)
      self._regrets[score] = squash(gap, self.cfg) / self.cfg.reward_clip
    return self._regrets[score]

  def regret(self, key: Key) -> float:
    """How much worse than the current best the best program with this setting was, squashed like a reward
    and scaled into [-1, 0] (-1 = a reward of -reward_clip or worse, or only failures; 0 = as good, or never
    seen)."""
    if key not in self.best or self.best_score is None:
      return 0.0
    return self.regret_of(self.best[key])

  def mean_regret(self, key: Key) -> float:
    """Like `regret`, of the mean score of the programs with this setting (-1 when none had a score)."""
    if key not in self.best or self.best_score is None:
      return 0.0
    if not self.scored.get(key):
      return -1.0
    return self.regret_of(self.total[key] / self.scored[key])

  def feats(self, key: Key) -> list[float]:
    """[log count / 3, regret, mean regret, share of the measured programs with it]: the first numbers of every
    value token (see batch.REGRET)."""
    return [math.log1p(self.count.get(key, 0)) / 3, self.regret(key), self.mean_regret(key),
            self.count.get(key, 0) / len(self.measured)]


# ---------------------------------------------------------------------------------------------------------------
# The encoder's input.

@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  buckets: int = 2048
  history: int = 32        # K: past trials the encoder reads
  max_edits: int = 3       # M
  reward: RewardConfig = RewardConfig()


def _program(b: _Builder, space: Any, tree: Node) -> None:
  for path, value in flatten(tree).items():
    spec = space.grammar.spec_at(tree, path)
    name = path.rsplit(".", 1)[-1]
    items = list(enumerate(value)) if isinstance(value, tuple) else [(None, value)]
    for i, v in items:
      where = path if i is None else f"{path}[]"
      pos = [0.0, 0.0] if i is None else [1.0, i / max(1, len(value) - 1)]
      b.add(KIND_PROGRAM, [where, name, f"{where}={value_str(v)}", value_str(v)],
            scalar_feats(v) + [_rank(spec, v)] + pos)
    if isinstance(value, tuple):  # the list as a whole: its length
      b.add(KIND_PROGRAM, [path, name, f"{path}={value_str(value)}"], [1.0, 1.0, math.log10(1 + len(value)) / 2])


def _trials(b: _Builder, history: Sequence[Any], stats: HistoryStats, cfg: FeatureConfig) -> None:
  recent = list(zip(history, stats.rewards, stats.edit_strings))[-cfg.history:]
  m = cfg.max_edits
  for age, (outcome, r, (sites, pairs)) in enumerate(reversed(recent)):
    b.add(KIND_TRIAL, [f"status:{outcome.status}"],
          [r / cfg.reward.reward_clip, float(outcome.kept), float(outcome.status in FAILED),
           age / cfg.history, len(outcome.edits) / m], single=[*sites[:m], *pairs[:m]])


def noise_level(state: Any, stats: HistoryStats) -> float:
  """The noise over one reward unit, capped at 1: 1 when differences of one unit are noise, ~0 when deterministic."""
  return min(float(state.sigma or 0.0) / stats.unit, 1.0)


def _global(b: _Builder, state: Any, stats: HistoryStats, cfg: FeatureConfig) -> None:
  history, rewards = state.history, stats.rewards
  since = next((k for k, o in enumerate(reversed(history)) if o.kept), len(history))
  gain = 0.0
  first = next((o.best_before for o in history if o.best_before is not None), None)
  if first is not None and state.best_score is not None:
    gain = (first - state.best_score) / noise_unit(first, state.sigma, cfg.reward)
  recent = rewards[-8:]
  _, children, _ = _neighbours(state.space, state.current)
  around = [t for ts in children.values() for t in ts]
  b.add(KIND_GLOBAL, ["<global>"],
        [float(state.budget_used), math.log1p(len(history)) / 7, math.log1p(since) / 5, math.tanh(gain / 20),
         (sum(recent) / len(recent) / cfg.reward.reward_clip) if recent else 0.0,
         sum(o.kept for o in history[-16:]) / 16, noise_level(state, stats),
         sum(t in stats.measured for t in around) / max(1, len(around)), math.log1p(len(around)) / 5])


def observation(state: Any, stats: HistoryStats, cfg: FeatureConfig) -> Tokens:
  """[T] tokens: the global summary (position 0, read out by the encoder), program fields, last K trials.

  T is bucketed as if all K trial slots were full, so it stays put while the history fills up (one jit shape).
  """
  b = _Builder(cfg.buckets)
  _global(b, state, stats, cfg)
  _program(b, state.space, state.current)
  size = bucket(len(b.kinds) + cfg.history, 16)
  _trials(b, state.history, stats, cfg)
  return b.tokens(size)


# ---------------------------------------------------------------------------------------------------------------
# Candidates.

def _current(tree: Node, site: Site) -> Any:
  value = get_path(tree, site[1])
  if isinstance(value, Node):
    return value.variant
  if len(site) > 2 and site[0] != "insert":
    return value[site[2]]
  return value


@functools.lru_cache(maxsize=256)
def _neighbours(space: Any, tree: Node) -> tuple[dict[Site, list[Any]], dict[Site, list[Node]], dict[Site, list[Key]]]:
  """Legal actions of `tree`, the program each leads to and the (path, value) setting it makes. Cached: every
  proposal starts from the current program, which changes only when a trial is kept. The children come with the
  legal edits (`legal_moves`), not from applying each edit again: re-validating the tree per edit was most of a
  pretraining step."""
  actions: dict[Site, list[Any]] = {}
  children: dict[Site, list[Node]] = {}
  for edit, child in space.legal_moves(tree):
    actions.setdefault(edit.site, []).append(edit.value)
    children.setdefault(edit.site, []).append(child)
  settings = {s: [(s[1], setting(child, s[1])) for child in children[s]] for s in actions}
  return actions, children, settings


@dataclasses.dataclass(frozen=True)
class Candidates:
  """The choices at one step: legal sites (minus those already edited in this proposal), their legal values,
  and which values lead to a program not measured yet. Measured results are masked out (re-running one
  teaches nothing and costs a proposal) unless every choice is measured."""
  tree: Node
  sites: list[Site]
  values: dict[Site, list[Any]]
  fresh: dict[Site, list[bool]]
  settings: dict[Site, list[Key]]   # the (path, value) setting each value leads to
  children: dict[Site, list[Node]]  # the program each value leads to

  @classmethod
  def of(cls, space: Any, tree: Node, exclude: set[Site], stats: HistoryStats) -> "Candidates":
    actions, children, settings = _neighbours(space, tree)
    sites = [s for s in actions if s not in exclude]
    fresh = {s: [child not in stats.measured for child in children[s]] for s in sites}
    if not any(any(f) for f in fresh.values()):
      fresh = {s: [True] * len(f) for s, f in fresh.items()}
    return cls(tree, sites, {s: actions[s] for s in sites}, fresh, {s: settings[s] for s in sites},
               {s: children[s] for s in sites})


def site_tokens(space: Any, c: Candidates, step: int, stats: HistoryStats, cfg: FeatureConfig) -> Tokens:
  """[S] tokens: STOP (legal after the first edit), then one per candidate site."""
  b = _Builder(cfg.buckets)
  b.add(KIND_STOP, ["<stop>"], [step / cfg.max_edits])
  for site in c.sites:
    op, path = site[0], site[1]
    cur = _current(c.tree, site)
    spec = space.grammar.spec_at(c.tree, path)
    name = path.rsplit(".", 1)[-1] if path else "<root>"
    index = site[2] / max(1, len(get_path(c.tree, path))) if len(site) > 2 else 0.0
    fresh = c.fresh[site]
    seen = [stats.count.get(k, 0) > 0 for k in c.settings[site]]
    regret = [stats.regret(k) for k in c.settings[site]]
    mean = [stats.mean_regret(k) for k in c.settings[site]]
    b.add(KIND_SITE, [f"{op}:{path}", name, f"{path}={value_str(cur)}", site_str(site), f"op:{op}"],
          [sum(seen) / len(seen), sum(regret) / len(regret),
           float(len(site) > 2), index, math.log1p(len(fresh)) / 3, _rank(spec, cur), sum(fresh) / len(fresh),
           max(regret), sum(mean) / len(mean), math.log1p(stats.edited.get(path, 0)) / 3])
  legal = [any(c.fresh[s]) for s in c.sites]
  # STOP ends the proposal on the program edited so far: legal once it is a new program (or nothing else is)
  stop = step > 0 and (c.tree not in stats.measured or not any(legal))
  return b.tokens(bucket(len(b.kinds)), [stop] + legal)


def _score_ranks(best: Sequence[float | None]) -> list[float]:
  """Each value's place among the values measured so far by their best score, in [0, 1] (0 = the best one);
  0.5 for values not measured yet."""
  seen = sorted({x for x in best if x is not None})
  return [0.5 if x is None else seen.index(x) / max(1, len(seen) - 1) for x in best]


def value_tokens(space: Any, c: Candidates, site: Site, stats: HistoryStats, cfg: FeatureConfig) -> Tokens:
  """[V] tokens, one per legal value of `site`."""
  b = _Builder(cfg.buckets)
  path = site[1]
  spec = space.grammar.spec_at(c.tree, path)
  cur = _current(c.tree, site)
  key = site_str(site)
  ranks = _score_ranks([stats.best.get(k) for k in c.settings[site]])
  n = len(c.values[site])
  for i, (v, fresh, setting_key) in enumerate(zip(c.values[site], c.fresh[site], c.settings[site])):
    b.add(KIND_VALUE, [value_str(v), f"{path}={value_str(v)}", f"{key}={value_str(v)}"],
          stats.feats(setting_key) + scalar_feats(v)
          + [_rank(spec, v), _rank(spec, v) - _rank(spec, cur), _log_ratio(v, cur), float(fresh), ranks[i],
             i / max(1, n - 1)])
  return b.tokens(bucket(len(b.kinds)), c.fresh[site])
