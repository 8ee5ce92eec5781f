"""Offline: how well do generic features predict a one-edit child's true regret (centred per step)?"""
import math, sys
import numpy as np
from arrl.pretrain import Episode
from arrl.ppo.tasks import nas_task, synthetic
from arrl.ppo.features import HistoryStats, Candidates, _neighbours
from arrl.ppo.reward import RewardConfig, squash
from arrl.agents.base import Proposal

cfg = RewardConfig()
rng = np.random.default_rng(0)
tasks = []
for d in ("cs", "physics", "photo", "computers"):
  t = nas_task(d)
  tasks += [t, t]
for i in range(10):
  tasks.append(synthetic(np.random.default_rng([99, i])))

def vec(space, tree, fields):
  p = space.to_params(tree)
  return [str(p.get(f)) for f in fields]

rows = []  # (task idx, step id, target, feats...)
for ti, task in enumerate(tasks):
  ep = Episode(task, 80)
  fields = sorted(task.space.to_params(ep.current))
  step_id = 0
  for t in range(1, 80):
    state = ep.state()
    stats = HistoryStats.of(state, cfg, tally=ep.tally)
    c = Candidates.of(task.space, ep.current, set(), stats)
    if t in (8, 15, 25, 40, 60, 79):
      meas = [tr for tr, s in ep.cache.items() if s is not None]
      X = np.array([vec(task.space, tr, fields) for tr in meas])
      sc = np.array([ep.cache[tr] for tr in meas])
      r = np.array([stats._regret_of(s) for s in sc])   # [-1, 0]
      for site in c.sites:
        for child, f, key in zip(c.children[site], c.fresh[site], c.settings[site]):
          if not f: continue
          x = np.array(vec(task.space, child, fields))
          d = (X != x).sum(1)
          feats = [stats.mean_regret(key), stats.regret(key), math.log1p(stats.count.get(key, 0)) / 3]
          for ell in (0.5, 1.0, 2.0):
            w = np.exp(-d / ell); feats.append(float((w * r).sum() / w.sum()))
          near = r[d <= 1]
          feats += [d.min() / len(fields), float(near.max()) if len(near) else -1.0, float(near.mean()) if len(near) else -1.0, len(near) / 5]
          near2 = r[d <= 2]
          feats += [float(near2.max()) if len(near2) else -1.0, float(near2.mean()) if len(near2) else -1.0]
          rows.append([ti, ti * 1000 + step_id, -task.regret(task.space.to_params(child))] + feats)
      step_id += 1
    # random fresh neighbour walk, keep if better (1 edit)
    opts = [(s, v) for s in c.sites for v, f in zip(c.values[s], c.fresh[s]) if f]
    s, v = opts[rng.integers(len(opts))]
    from arrl.edits import make_edit
    e = make_edit(s, v)
    ep.step(Proposal(tree=task.space.apply(ep.current, e), parent=ep.current, edits=(e,)))
    if ep.done: break
A = np.array(rows)
names = ["mean_reg", "best_reg", "count", "k0.5", "k1", "k2", "mind", "near1max", "near1mean", "n_near1", "near2max", "near2mean"]
# centre per step
Y = A[:, 2].copy(); F = A[:, 3:].copy()
for sid in np.unique(A[:, 1]):
  m = A[:, 1] == sid
  Y[m] -= Y[m].mean(); F[m] -= F[m].mean(0)
train = A[:, 0] % 2 == 0
def r2(cols):
  Xt = F[:, cols]
  w, *_ = np.linalg.lstsq(Xt[train], Y[train], rcond=None)
  pred = Xt[~train] @ w
  nas = A[~train, 0] < 8
  out = []
  for m in (np.ones(len(pred), bool), nas, ~nas):
    out.append(1 - ((Y[~train][m] - pred[m]) ** 2).mean() / (Y[~train][m] ** 2).mean())
  return out
print("rows", len(A))
print("marginal     ", np.round(r2([0, 1, 2]), 3))
print("kernel       ", np.round(r2(list(range(3, 12))), 3))
print("all          ", np.round(r2(list(range(12))), 3))
for i, n in enumerate(names):
  print(f"{n:10s}", np.round(r2([i]), 3))
