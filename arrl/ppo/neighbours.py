"""Numbers that describe one one-edit neighbour of the program edited so far, comparable across its sites.

A value token (features.value_tokens) describes a value against the other values of its own site; a surrogate
trained on them ranks a site's values but not the sites (within-choice correlation with the true gain 0.42 for
values, 0.05 for sites on arxiv+proteins). These numbers describe the program a (site, value) leads to against
every measured program: the history's verdict on the setting it makes and on the one it replaces, and how the
measured programs near it (in edits) did, Hamming-kernel style. They mean the same in any space.

A small MLP on them (`fit`, on rows `collect`ed from hill-climbing runs on training tasks; `python -m
arrl.fit_scorer`) predicts the improvement max(gain, 0) a neighbour makes on the kept best; a network with
NetConfig.neighbour_guide adds a learned multiple of that prediction to the logits of the first edit's site (its
best value's) and value (`rollout.guide_neighbours`). Predicting the gain itself mostly predicts harm, and a policy
led by it stops exploring (benchmarks/results/meta/joint/study.md).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from arrl.ppo.features import Candidates, HistoryStats, _current, _rank, _settings, noise_level, setting
from arrl.ppo.reward import trial_score

N_FEATS = 24
LENGTHS = (0.5, 1.0, 2.0)    # kernel length scales, in edits
HIDDEN = 64                  # the scorer's two hidden layers


def measured_regrets(history: Sequence[Any], stats: HistoryStats) -> tuple[list[dict[str, str]], np.ndarray]:
  """Each distinct measured program's settings (path -> value text) and its regret against the current best
  ([-1, 0] like HistoryStats.regret; -1 for a failure), the best score kept when a program ran more than once."""
  best: dict[Any, float] = {}
  for o in history:
    s = trial_score(o)
    s = math.inf if s is None else s
    best[o.tree] = min(best.get(o.tree, math.inf), s)
  progs = [dict(_settings(t)) for t in best]
  r = np.array([-1.0 if not math.isfinite(s) or stats.best_score is None else stats.regret_of(s)
                for s in best.values()], np.float64)
  return progs, r


def neighbour_feats(state: Any, c: Candidates, stats: HistoryStats) -> tuple[list[tuple[Any, int]], np.ndarray]:
  """The (site, value index) of each fresh neighbour of c.tree (c.fresh: every neighbour when all are measured)
  and its numbers [N, N_FEATS], from the search state (space, history, budget, noise) and its statistics. A
  neighbour's edit distance to a measured program is the current program's, one less where that program has the
  new setting and one more where it has the replaced one: exact when an edit changes one setting (a module
  variant's or a list's sub-settings are not followed)."""
  space, progs, r = state.space, *measured_regrets(state.history, stats)
  tail = [state.budget_used, noise_level(state, stats), math.log1p(len(progs)) / 5]
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
      if not fresh:
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
                  + [rank - cur_rank, abs(rank - cur_rank), spread, share_seen, float(fresh)] + tail)
      where.append((site, i))
  X = np.array(rows, np.float32).reshape(-1, N_FEATS)
  return where, X


def scores(weights: Sequence[tuple[np.ndarray, np.ndarray]], X: np.ndarray) -> np.ndarray:
  """[N] the scorer's predictions for rows X [N, N_FEATS] (numpy: a few dozen rows per step, no jit needed)."""
  h = X
  for k, (W, b) in enumerate(weights):
    h = h @ W + b
    if k < len(weights) - 1:
      h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))  # GELU, tanh form (jax.nn.gelu's default)
  return h[:, 0]


def fit(X: np.ndarray, Y: np.ndarray, steps: int = 3000, seed: int = 0, lr: float = 3e-3,
        batch: int = 4096) -> list[tuple[np.ndarray, np.ndarray]]:
  """Least-squares fit of the scorer (N_FEATS -> HIDDEN -> HIDDEN -> 1, AdamW with a cosine schedule) to targets Y."""
  import jax
  import jax.numpy as jnp
  import optax

  if X.ndim != 2 or X.shape[1] != N_FEATS or len(X) != len(Y) or not len(X):
    raise ValueError(f"need rows [N, {N_FEATS}] and N targets, got {X.shape} and {Y.shape}")
  rng = np.random.default_rng(seed)
  sizes = [N_FEATS, HIDDEN, HIDDEN, 1]
  w = [(rng.normal(0, 1 / math.sqrt(a), (a, b)).astype(np.float32) * (0.1 if b == 1 else 1.0), np.zeros(b, np.float32))
       for a, b in zip(sizes[:-1], sizes[1:])]

  def forward(w, x):
    for k, (W, b) in enumerate(w):
      x = x @ W + b
      if k < len(w) - 1:
        x = jax.nn.gelu(x)
    return x[:, 0]

  tx = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=1e-4)
  w = jax.tree.map(jnp.asarray, w)
  opt = tx.init(w)

  @jax.jit
  def step(w, opt, x, y):
    grads = jax.grad(lambda w: jnp.mean((forward(w, x) - y) ** 2))(w)
    updates, opt = tx.update(grads, opt, w)
    return optax.apply_updates(w, updates), opt

  X, Y = np.asarray(X, np.float32), np.asarray(Y, np.float32)
  for _ in range(steps):
    idx = rng.integers(0, len(X), min(batch, len(X)))
    w, opt = step(w, opt, X[idx], Y[idx])
  return [(np.asarray(W), np.asarray(b)) for W, b in w]


def hill_climb(task: Any, trials: int, rng: np.random.Generator, pick: Callable | None = None,
               record: Callable | None = None) -> Any:
  """One-edit hill climbing on a task (an `arrl.pretrain.Episode`, returned): each step measures the fresh neighbour
  of the kept best that `pick(X, rng)` chooses from the neighbours' numbers X (default: uniformly, the `random`
  agent's rule); `record(ep, c, where, X)` sees every step's neighbours first."""
  from arrl.agents.base import Proposal
  from arrl.edits import make_edit
  from arrl.pretrain import Episode
  from arrl.ppo.reward import RewardConfig

  cfg = RewardConfig()
  ep = Episode(task, trials)
  while not ep.done:
    state = ep.state()
    stats = HistoryStats.of(state, cfg, tally=ep.tally)
    c = Candidates.of(task.space, ep.current, set(), stats)
    where, X = neighbour_feats(state, c, stats)
    if record is not None:
      record(ep, c, where, X)
    site, i = where[pick(X, rng) if pick is not None else int(rng.integers(len(where)))]
    e = make_edit(site, c.values[site][i])
    ep.step(Proposal(tree=task.space.apply(ep.current, e), parent=ep.current, edits=(e,)))
  return ep


def collect(tasks: Sequence[Any], trials: int, seeds: Sequence[Any], progress: Callable | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
  """Rows for `fit`: uniform one-edit hill climbs (`hill_climb`), one per (task, seed); at every step every fresh
  neighbour's numbers and the improvement max(0, drop in true normalised regret) it makes. `progress(i)` is called
  after the i-th run."""
  X, Y = [], []

  def record(ep: Any, c: Candidates, where: list, F: np.ndarray) -> None:
    here = ep.oracle(c.tree)
    X.append(F)
    Y.append(np.array([max(0.0, here - ep.oracle(c.children[s][i])) for s, i in where], np.float32))

  for n, (task, seed) in enumerate(zip(tasks, seeds)):
    hill_climb(task, trials, np.random.default_rng(seed), record=record)
    if progress is not None:
      progress(n)
  return np.concatenate(X), np.concatenate(Y)


def save_scorer(path: str, weights: Sequence[tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]) -> None:
  """Writes the scorer's layers and what made them (JSON) to an .npz file, atomically."""
  import json
  import os
  arrays = {f"{name}{k}": a for k, (W, b) in enumerate(weights) for name, a in (("W", W), ("b", b))}
  tmp = path + ".tmp.npz"
  np.savez(tmp, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
  os.replace(tmp, path)


def load_scorer(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
  """The layers `save_scorer` wrote; one clear error for a missing or foreign file."""
  try:
    with np.load(path) as z:
      layers = [(z[f"W{k}"], z[f"b{k}"]) for k in range(3)]
  except (OSError, KeyError, ValueError) as e:
    raise ValueError(f"{path}: not a neighbour scorer written by `python -m arrl.fit_scorer` ({e})") from None
  shapes = [W.shape for W, _ in layers]
  if shapes != [(N_FEATS, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 1)]:
    raise ValueError(f"{path}: scorer layers of shapes {shapes}, expected {N_FEATS} -> {HIDDEN} -> {HIDDEN} -> 1")
  return layers
