"""Diagnostic: the study's one-edit hill climber (uniform fresh neighbour vs softmax on the fitted scorer) on the
synthetic tasks of a benchmarks.synthetic batch, to tell the scorer's effect on those tasks from the agent's."""
import sys
import numpy as np
from arrl.ppo import neighbours
from benchmarks.synthetic import tasks

batch, scorer_path, temp = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
w = neighbours.load_scorer(scorer_path)

def climb(task, seed, guided, trials=100):
  def pick(X, rng):
    s = neighbours.scores(w, X); p = np.exp((s - s.max()) / temp)
    return int(rng.choice(len(p), p=p / p.sum()))
  reg = neighbours.hill_climb(task, trials, np.random.default_rng(seed), pick if guided else None).regrets[:trials]
  return np.mean(reg + [reg[-1]] * (trials - len(reg)))

ts = tasks(batch, 16)
u = np.array([[climb(t, [s, i], False) for s in range(3)] for i, t in enumerate(ts)]).mean(1)
g = np.array([[climb(t, [s, i], True) for s in range(3)] for i, t in enumerate(ts)]).mean(1)
x = g - u; h = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
print(f"batch {batch}, 16 tasks x 3 seeds: uniform {u.mean():.3f}, scorer T {temp} {g.mean():.3f}, paired {x.mean():+.3f} "
      f"[{x.mean() - h:+.3f}, {x.mean() + h:+.3f}], lower on {(x < 0).sum()} of 16")
