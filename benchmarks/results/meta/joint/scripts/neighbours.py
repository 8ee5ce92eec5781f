"""Numbers that describe one one-edit neighbour of the program edited so far, comparable across its sites.

A value token (features.value_tokens) describes a value against the other values of its own site; a surrogate
trained on them ranks a site's values but not the sites (within-choice correlation with the true gain 0.42 for
values, 0.05 for sites on arxiv+proteins). These numbers describe the program a (site, value) leads to against
every measured program: the history's verdict on the setting it makes and on the one it replaces, and how the
measured programs near it (in edits) did, Hamming-kernel style. They mean the same in any space.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from arrl.ppo.features import Candidates, HistoryStats, _current, _rank, _settings, setting
from arrl.ppo.reward import trial_score

N_FEATS = 24
LENGTHS = (0.5, 1.0, 2.0)    # kernel length scales, in edits


def measured_regrets(history: Sequence[Any], stats: HistoryStats) -> tuple[list[dict[str, str]], np.ndarray]:
  """Each distinct measured program's settings (path -> value text) and its regret against the current best
  ([-1, 0] like HistoryStats.regret; -1 for a failure), the best score kept when a program ran more than once."""
  best: dict[Any, float] = {}
  for o in history:
    s = trial_score(o)
    s = math.inf if s is None else s
    best[o.tree] = min(best.get(o.tree, math.inf), s)
  progs = [dict(_settings(t)) for t in best]
  r = np.array([-1.0 if not math.isfinite(s) or stats.best_score is None else stats._regret_of(s)
                for s in best.values()], np.float64)
  return progs, r


def neighbour_feats(space: Any, c: Candidates, stats: HistoryStats, progs: list[dict[str, str]], r: np.ndarray,
                    budget_used: float, noise: float, only_fresh: bool = True
                    ) -> tuple[list[tuple[Any, int]], np.ndarray]:
  """The (site, value index) of each (fresh) neighbour of c.tree and its numbers [N, N_FEATS]."""
  cur = dict(_settings(c.tree))
  n_paths = max(1, len(cur))
  P = len(progs)
  d0 = np.array([sum(p.get(k) != v for k, v in cur.items()) for p in progs], np.float64)
  where, rows = [], []
  for site in c.sites:
    path = site[1]
    old = (path, setting(c.tree, path))
    col = np.array([p.get(path) for p in progs], object)
    spec = space.grammar.spec_at(c.tree, path)
    seen_mean = [stats.mean_regret(k) for k in c.settings[site] if stats.count.get(k)]
    spread = (max(seen_mean) - min(seen_mean)) if len(seen_mean) > 1 else 0.0
    share_seen = len(seen_mean) / max(1, len(c.settings[site]))
    cur_feats = [stats.regret(old), stats.mean_regret(old)]
    cur_rank = _rank(spec, _current(c.tree, site))
    for i, (v, fresh, key) in enumerate(zip(c.values[site], c.fresh[site], c.settings[site])):
      if only_fresh and not fresh:
        continue
      if P:
        d = d0 - (col == key[1]) + (col == old[1]) if key[0] == path else d0
        kern = []
        for ell in LENGTHS:
          w = np.exp(-d / ell)
          kern.append(float((w * r).sum() / w.sum()))
        near1, near2 = r[d <= 1], r[d <= 2]
        kern += [float(d.min()) / n_paths,
                 float(near1.max()) if len(near1) else -1.0, float(near1.mean()) if len(near1) else -1.0,
                 len(near1) / 5, float(near2.max()) if len(near2) else -1.0,
                 float(near2.mean()) if len(near2) else -1.0, len(near2) / 20]
      else:
        kern = [0.0] * 3 + [1.0, -1.0, -1.0, 0.0, -1.0, -1.0, 0.0]
      rank = _rank(spec, v)
      rows.append(stats.feats(key) + cur_feats + kern
                  + [rank - cur_rank, abs(rank - cur_rank), spread, share_seen, float(fresh),
                     budget_used, min(noise, 1.0), math.log1p(P) / 5])
      where.append((site, i))
  X = np.array(rows, np.float32).reshape(-1, N_FEATS)
  return where, X

