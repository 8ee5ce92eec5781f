"""How much would a neighbour scorer of a given quality (R^2 on the centred one-edit children's regret) gain over a
uniformly random fresh neighbour (the `random` agent), on the NAS training tables? Hill climbing from the default
program: each step scores the fresh one-edit neighbours of the current best by true regret + noise and measures
the best-scored one (greedy on the scorer) or a softmax draw; keep if better. Mean regret over the run, @50, @150."""
import sys
import numpy as np
from arrl.ppo.tasks import nas_task
from arrl.ppo.features import _neighbours

def run(task, r2, seed, budget=150, temp=None):
  rng = np.random.default_rng(seed)
  space = task.space
  cur = space.default()
  reg = lambda t: task.regret(space.to_params(t))
  best = reg(cur); seen = {cur}; curve = []
  memo = {}
  for _ in range(budget):
    _, children, _ = _neighbours(space, cur)
    kids = [k for ks in children.values() for k in ks if k not in seen]
    if not kids:
      # walk: random neighbour of a random seen program (rare)
      kids = [k for s in list(seen) for ks in _neighbours(space, s)[1].values() for k in ks if k not in seen][:200]
    true = np.array([memo.setdefault(k, reg(k)) for k in kids])
    if r2 is None:
      pick = int(rng.integers(len(kids)))
    else:
      c = true - true.mean(); var = c.var() + 1e-12
      noise_sd = np.sqrt(var * (1 - r2) / max(r2, 1e-9))
      score = -(true + rng.normal(0, noise_sd, len(kids)))
      pick = int(np.argmax(score))
    k = kids[pick]; seen.add(k)
    if true[pick] < best:
      best, cur = true[pick], k
    curve.append(best)
  return np.array(curve)

tasks = [nas_task(d) for d in ("cs", "physics", "photo", "computers", "arxiv", "proteins")]
for r2 in (None, 0.05, 0.1, 0.2, 0.4, 1.0):
  C = np.array([run(t, r2, [s, i]) for i, t in enumerate(tasks) for s in range(12)])
  print(f"R2 {str(r2):5s}: mean over run {C.mean():.3f} @25 {C[:,24].mean():.3f} @50 {C[:,49].mean():.3f} @150 {C[:,149].mean():.3f}", flush=True)
