"""Sampling composite actions for a batch of searches at once: one jitted network call per decision step for
all of them. The agent samples with a batch of one; meta-training (`arrl.pretrain`) with a batch of many
environments. Both run this code, so a vectorised episode makes the same choices as the sequential agent.

Each search has its own numpy Generator, consumed in the same order as when it is sampled alone; searches
that are finished (STOP chosen) or not asked for stay in the batch as all-masked rows, so the jitted shapes
depend only on the batch size and the padded token counts.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from arrl.agents.base import Proposal
from arrl.edits import make_edit
from arrl.ppo import neighbours, network
from arrl.ppo.batch import GUIDE, Actions, Tokens, Transition, bucket, empty_tokens, pad_rows, remap, stack_tokens
from arrl.ppo.features import Candidates, FeatureConfig, HistoryStats, observation, site_tokens, value_tokens


@dataclasses.dataclass
class Search:
  """One search being sampled for: its state, history statistics, observation, sampling RNG and the relabelling
  of hash rows every token it shows the network goes through (None: none; see batch.hash_permutation), and in
  meta-training the oracle: a program's true normalised regret, whence each candidate's surrogate target."""
  state: Any                      # arrl.agents.base.SearchState
  stats: HistoryStats
  obs: Tokens
  rng: np.random.Generator
  perm: np.ndarray | None = None
  oracle: Callable[[Any], float] | None = None

  @classmethod
  def of(cls, state: Any, stats: HistoryStats, feat_cfg: FeatureConfig, rng: np.random.Generator,
         perm: np.ndarray | None = None, oracle: Callable[[Any], float] | None = None) -> "Search":
    return cls(state, stats, remap(observation(state, stats, feat_cfg), perm), rng, perm, oracle)


@dataclasses.dataclass(frozen=True)
class Sampled:
  proposal: Proposal
  transition: Transition
  decisions: int                  # choices made (sites and values)
  entropy: float                  # summed entropy of those choices (nats)
  targets: tuple[np.ndarray, np.ndarray] | None = None  # [M, S], [M, V] beside act.sites, act.values: the drop
                                  # in true normalised regret each candidate makes (with an oracle)


def site_targets(c: Candidates, oracle: Callable[[Any], float], size: int) -> np.ndarray:
  """[size] per site token: the largest drop in true regret one of its new values makes from the program edited so
  far (c.tree); STOP's (first) is 0: it leaves that program as it is."""
  out = np.zeros(size, np.float32)
  here = oracle(c.tree)
  for i, site in enumerate(c.sites):
    gains = [here - oracle(t) for t, f in zip(c.children[site], c.fresh[site]) if f]
    out[1 + i] = max(gains, default=0.0)
  return out


def value_targets(c: Candidates, site: Any, oracle: Callable[[Any], float], size: int) -> np.ndarray:
  """[size] per value token of `site`: the drop in true regret from the program edited so far to the one it makes."""
  out = np.zeros(size, np.float32)
  here = oracle(c.tree)
  out[:len(c.children[site])] = [here - oracle(t) for t in c.children[site]]
  return out


def guide_sites(net_cfg: network.NetConfig, feat_cfg: FeatureConfig, params: Any, searches: Sequence[Search],
                cands: Sequence[Candidates | None], sites: Sequence[Tokens | None]) -> None:
  """Writes into each site token (batch.GUIDE, in place) the surrogate's best predicted gain among that site's legal
  values (NetConfig.site_guide_from_values): one network call for every site of every search."""
  rows, where = [], []
  for b, c in enumerate(cands):
    if c is not None:
      for i, site in enumerate(c.sites):
        rows.append(value_tokens(searches[b].state.space, c, site, searches[b].stats, feat_cfg))
        where.append((b, i))
  if not rows:
    return
  toks = stack_tokens(rows + [empty_tokens((1,))] * (bucket(len(rows)) - len(rows)))
  pred = np.asarray(network.predict(net_cfg, params, toks))
  for (b, i), p, t in zip(where, pred, rows):
    sites[b].nums[1 + i, GUIDE] = p[:len(t.mask)][t.mask].max() if t.mask.any() else 0.0


def guide_neighbours(weights: Any, searches: Sequence[Search],
                     cands: Sequence[Candidates | None], sites: Sequence[Tokens | None]) -> list[dict | None]:
  """The neighbour scorer's predicted improvement of every fresh one-edit neighbour of each search's program
  (NetConfig.neighbour_guide; the first edit only: the scorer knows neighbours of a measured program): written
  into each site token's guide (the best of its values'), and returned per search as {site: [V] per value} for
  the value tokens."""
  out: list[dict | None] = [None] * len(searches)
  for b, c in enumerate(cands):
    if c is None:
      continue
    where, X = neighbours.neighbour_feats(searches[b].state, c, searches[b].stats)
    pred = neighbours.scores(weights, X) if len(X) else np.zeros(0)
    per_site = {site: np.zeros(len(c.values[site]), np.float32) for site in c.sites}
    for (site, i), p in zip(where, pred):
      per_site[site][i] = p
    for i, site in enumerate(c.sites):
      fresh = np.asarray(c.fresh[site])
      sites[b].guide[1 + i] = per_site[site][fresh].max() if fresh.any() else 0.0
    out[b] = per_site
  return out


def _choose(rng: np.random.Generator, logp: np.ndarray, legal: np.ndarray) -> tuple[int, float, float]:
  """(index, its log-probability, the entropy of the masked categorical)."""
  p = np.where(legal, np.exp(logp.astype(np.float64)), 0.0)
  i = int(rng.choice(len(p), p=p / p.sum()))
  return i, float(logp[i]), float(-np.sum(np.where(legal, np.exp(logp) * logp, 0.0)))


def _stack(rows: Sequence[Tokens | None], minimum: int) -> Tokens:
  """Rows of one decision step, padded to a common bucket (at least `minimum`); None = an inactive search."""
  size = max([minimum] + [bucket(r.kind.shape[-1]) for r in rows if r is not None])
  return stack_tokens([r if r is not None else empty_tokens((1,)) for r in rows], size)


def encode(net_cfg: network.NetConfig, params: Any, searches: Sequence[Search],
           obs_size: int = 0) -> tuple[Any, np.ndarray]:
  """Encoder states [B, d] and critic values [B] of every search, in one call."""
  size = max([obs_size] + [s.obs.kind.shape[0] for s in searches])
  h, value = network.encode(net_cfg, params, stack_tokens([s.obs for s in searches], size))
  return h, np.asarray(value)


def sample(net_cfg: network.NetConfig, feat_cfg: FeatureConfig, params: Any, searches: Sequence[Search], h: Any,
           values: np.ndarray, active: Sequence[bool], min_sites: int = 8,
           min_values: int = 8) -> list[Sampled | None]:
  """One composite action (up to M site/value choices, until STOP) for each active search; None for others."""
  B, M = len(searches), net_cfg.max_edits
  trees = [s.state.current for s in searches]
  chosen: list[set] = [set() for _ in range(B)]
  edits: list[list] = [[] for _ in range(B)]
  sites_tok: list[list[Tokens]] = [[] for _ in range(B)]
  values_tok: list[list[Tokens]] = [[] for _ in range(B)]
  site_tgt: list[list[np.ndarray]] = [[] for _ in range(B)]
  value_tgt: list[list[np.ndarray]] = [[] for _ in range(B)]
  site_idx, value_idx = np.zeros((B, M), np.int32), np.zeros((B, M), np.int32)
  site_on, value_on = np.zeros((B, M), bool), np.zeros((B, M), bool)
  logp, entropy = np.zeros(B), np.zeros(B)
  live = list(active)
  ctx = np.zeros(h.shape, np.float32)
  scorer = network.scorer_weights(net_cfg, params) if net_cfg.neighbour_guide else None
  for j in range(M):
    if not any(live):
      break
    cands: list[Candidates | None] = [None] * B
    st: list[Tokens | None] = [None] * B
    for b in np.flatnonzero(live):
      s = searches[b]
      cands[b] = Candidates.of(s.state.space, trees[b], chosen[b], s.stats)
      if j == 0 and not cands[b].sites:
        raise ValueError("the program has no legal edit: the search space is a single point")
      st[b] = remap(site_tokens(s.state.space, cands[b], j, s.stats, feat_cfg), s.perm)
    if net_cfg.site_guide_from_values:
      guide_sites(net_cfg, feat_cfg, params, searches, cands, st)
    value_guides = guide_neighbours(scorer, searches, cands, st) if scorer is not None and j == 0 else None
    slogp, skeys = network.site_scores(net_cfg, params, h, ctx, j, _stack(st, min_sites))
    slogp, skeys = np.asarray(slogp), np.asarray(skeys)
    vt: list[Tokens | None] = [None] * B
    pick = np.zeros(B, np.int32)
    for b in np.flatnonzero(live):
      i, lp, ent = _choose(searches[b].rng, slogp[b], np.pad(st[b].mask, (0, slogp.shape[1] - len(st[b].mask))))
      sites_tok[b].append(st[b])
      if searches[b].oracle is not None:
        site_tgt[b].append(site_targets(cands[b], searches[b].oracle, len(st[b].mask)))
      site_idx[b, j], site_on[b, j], pick[b] = i, True, i
      logp[b], entropy[b] = logp[b] + lp, entropy[b] + ent
      if i == 0:  # STOP
        values_tok[b].append(empty_tokens((1,)))
        live[b] = False
        continue
      vt[b] = remap(value_tokens(searches[b].state.space, cands[b], cands[b].sites[i - 1], searches[b].stats, feat_cfg),
                    searches[b].perm)
      if value_guides is not None:
        g = value_guides[b][cands[b].sites[i - 1]]
        vt[b].guide[:len(g)] = g
    if not any(v is not None for v in vt):
      break
    skey = skeys[np.arange(B), pick]
    vlogp, vkeys = network.value_scores(net_cfg, params, h, ctx, j, skey, _stack(vt, min_values))
    vlogp, vkeys = np.asarray(vlogp), np.asarray(vkeys)
    vpick = np.zeros(B, np.int32)
    for b in np.flatnonzero([v is not None for v in vt]):
      k, lp, ent = _choose(searches[b].rng, vlogp[b], np.pad(vt[b].mask, (0, vlogp.shape[1] - len(vt[b].mask))))
      values_tok[b].append(vt[b])
      value_idx[b, j], value_on[b, j], vpick[b] = k, True, k
      logp[b], entropy[b] = logp[b] + lp, entropy[b] + ent
      site = cands[b].sites[pick[b] - 1]
      if searches[b].oracle is not None:
        value_tgt[b].append(value_targets(cands[b], site, searches[b].oracle, len(vt[b].mask)))
      edit = make_edit(site, cands[b].values[site][k])
      edits[b].append(edit)
      chosen[b].add(site)
      trees[b] = searches[b].state.space.apply(trees[b], edit)
    on = np.array([v is not None for v in vt])[:, None]
    ctx = ctx + np.where(on, skey + vkeys[np.arange(B), vpick], 0.0).astype(np.float32)
  out: list[Sampled | None] = [None] * B
  empty = empty_tokens((1,))
  for b in np.flatnonzero(active):
    pad = [empty] * (M - len(sites_tok[b]))
    act = Actions(sites=stack_tokens(sites_tok[b] + pad), site_idx=site_idx[b], values=stack_tokens(values_tok[b] + pad),
                  value_idx=value_idx[b], site_on=site_on[b], value_on=value_on[b])
    tr = Transition(obs=searches[b].obs, act=act, logp=np.float32(logp[b]), value=np.float32(values[b]),
                    reward=np.float32(0.0))
    prop = Proposal(tree=trees[b], parent=searches[b].state.current, edits=tuple(edits[b]))
    targets = None
    if searches[b].oracle is not None:  # a STOP step has no value target: its row stays 0 (value_on is False)
      targets = (pad_rows(site_tgt[b], act.sites.kind.shape), pad_rows(value_tgt[b], act.values.kind.shape))
    out[b] = Sampled(prop, tr, int(site_on[b].sum() + value_on[b].sum()), float(entropy[b]), targets)
  return out
