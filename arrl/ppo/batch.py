"""The arrays the network reads: tokens, a composite action, a transition; padding to bucketed sizes.

Every token (a program field, a past trial, the global summary, a candidate site or value) has the same
layout, so one embedding function reads them all:
  ids   [..., HASH_SLOTS] int32   hashed strings (0 = empty slot), summed into one embedding
  nums  [..., NUM_FEATS]  float32 numeric features, projected per token kind
  kind  [...]             int32   one of the KIND_* constants
  mask  [...]             bool    False for padding (and, for candidates, for illegal choices)
  guide [...]             float32 a candidate's score by the neighbour scorer (arrl.ppo.neighbours), added to its
                                  logit by a network with NetConfig.neighbour_guide; 0 elsewhere
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

HASH_SLOTS = 12
NUM_FEATS = 16
KIND_GLOBAL, KIND_PROGRAM, KIND_TRIAL, KIND_SITE, KIND_VALUE, KIND_STOP = range(6)
N_KINDS = 6
REGRET = 1       # nums index, in site and value tokens, of the history's verdict on that choice, in [-1, 0]:
                 # how much worse than the best the best program with that setting was (features.HistoryStats)
GUIDE = 15       # nums index, in site tokens, of the surrogate's best predicted gain among the site's values (written
                 # by the sampler for a network with NetConfig.site_guide_from_values; 0 otherwise)


class Tokens(NamedTuple):
  ids: np.ndarray
  nums: np.ndarray
  kind: np.ndarray
  mask: np.ndarray
  guide: np.ndarray


class Actions(NamedTuple):
  """One composite action: up to M (site, value) choices. Step j chooses `site_idx[j]` among `sites[j]`
  (index 0 is STOP), then, unless it chose STOP, `value_idx[j]` among `values[j]`."""
  sites: Tokens          # [M, S]
  site_idx: np.ndarray   # [M] int32
  values: Tokens         # [M, V]
  value_idx: np.ndarray  # [M] int32
  site_on: np.ndarray    # [M] bool: a site was chosen at step j
  value_on: np.ndarray   # [M] bool: a value was chosen at step j


class Transition(NamedTuple):
  obs: Tokens            # [T] the encoder's input: global token, program tokens, trial tokens
  act: Actions
  logp: np.ndarray       # [] log-probability of the action when it was sampled
  value: np.ndarray      # [] the critic's value then
  reward: np.ndarray     # []


def bucket(n: int, minimum: int = 8) -> int:
  """The padded size for n items: the next power of two, at least `minimum` (few distinct jit shapes)."""
  size = minimum
  while size < n:
    size *= 2
  return size


def hash_permutation(rng: np.random.Generator, buckets: int, fixed: frozenset[int] = frozenset()) -> np.ndarray:
  """[buckets] a random relabelling of the hash rows 1..buckets-1; row 0 (the empty slot) and the rows in `fixed`
  stay where they are. Applied to every token of one search (`remap`), a string keeps one row within that search
  and gets another in the next, so a network cannot learn what a particular string is worth across searches
  (`arrl.pretrain --hash-shuffle`; `features.shuffle_rows` fixes the rows of the strings that mean the same in
  every space)."""
  free = np.array([r for r in range(1, buckets) if r not in fixed], np.int32)
  perm = np.arange(buckets, dtype=np.int32)
  perm[free] = rng.permutation(free)
  return perm


def remap(t: Tokens, perm: np.ndarray | None) -> Tokens:
  """The tokens with their hash rows relabelled by `perm` (None: as they are)."""
  return t if perm is None else t._replace(ids=perm[t.ids])


def empty_tokens(shape: tuple[int, ...]) -> Tokens:
  return Tokens(ids=np.zeros((*shape, HASH_SLOTS), np.int32), nums=np.zeros((*shape, NUM_FEATS), np.float32),
                kind=np.zeros(shape, np.int32), mask=np.zeros(shape, bool), guide=np.zeros(shape, np.float32))


def pad_tokens(t: Tokens, size: int) -> Tokens:
  """Pads the last token axis to `size` with masked-out tokens."""
  n = t.kind.shape[-1]
  if n > size:
    raise ValueError(f"cannot pad {n} tokens to {size}")
  if n == size:
    return t
  def pad(a: np.ndarray, axis: int) -> np.ndarray:  # zeros + a copy: np.pad's generality costs ~10x here
    shape = list(a.shape)
    shape[axis] = size
    out = np.zeros(shape, a.dtype)
    out[(Ellipsis, slice(0, n)) + (slice(None),) * (-1 - axis)] = a
    return out
  return Tokens(ids=pad(t.ids, -2), nums=pad(t.nums, -2), kind=pad(t.kind, -1), mask=pad(t.mask, -1),
                guide=pad(t.guide, -1))


def pad_rows(rows: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
  """float32 zeros of `shape` with rows[i] in the leading corner of out[i] (rows of per-candidate numbers padded like
  their tokens)."""
  out = np.zeros(shape, np.float32)
  for i, r in enumerate(rows):
    out[(i, *(slice(0, n) for n in r.shape))] = r
  return out


def stack_tokens(rows: Sequence[Tokens], size: int | None = None) -> Tokens:
  """Stacks token sequences of different lengths, padded to a common bucketed length."""
  size = size or bucket(max(r.kind.shape[-1] for r in rows))
  padded = [pad_tokens(r, size) for r in rows]
  return Tokens(*(np.stack([getattr(p, f) for p in padded]) for f in Tokens._fields))


def stack_transitions(items: Sequence[Transition], sizes: tuple[int, int, int] = (0, 0, 0)) -> Transition:
  """A batch [N, ...] of transitions, every token axis padded to the batch's largest bucket (at least `sizes`:
  observation, site and value tokens; fixed sizes keep one jit shape across batches)."""
  if not items:
    raise ValueError("cannot stack an empty list of transitions")
  def size(rows: Sequence[Tokens], minimum: int) -> int:
    return max(minimum, bucket(max(r.kind.shape[-1] for r in rows)))
  obs = stack_tokens([t.obs for t in items], size([t.obs for t in items], sizes[0]))
  sites = stack_tokens([t.act.sites for t in items], size([t.act.sites for t in items], sizes[1]))
  values = stack_tokens([t.act.values for t in items], size([t.act.values for t in items], sizes[2]))
  act = Actions(sites=sites, values=values,
                **{f: np.stack([getattr(t.act, f) for t in items]) for f in ("site_idx", "value_idx", "site_on",
                                                                             "value_on")})
  return Transition(obs=obs, act=act, logp=np.stack([t.logp for t in items]).astype(np.float32),
                    value=np.stack([t.value for t in items]).astype(np.float32),
                    reward=np.stack([t.reward for t in items]).astype(np.float32))
