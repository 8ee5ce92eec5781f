import json, numpy as np
from scipy import stats
NINE = ("cs", "physics", "photo", "computers", "arxiv")
def load(a):
  r = json.load(open(f"loo/dec_{a}.json"))
  return {w: np.array([[np.mean(x) for x in r[f"{w}:{d}"]] for d in NINE]) for w in ("False", "True")}  # [tables, seeds]
def ci(x):
  x = np.ravel(x); m = x.mean(); h = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)); return m, m - h, m + h
base = ("random", "greedy", "local", "evolution", "tpe")
D = []
for a in (*base, "ppo-frozen"):
  r = load(a); d = r["True"] - r["False"]
  m, lo, hi = ci(d)
  print(f"{a:11s} without {r['False'].mean():.3f} with {r['True'].mean():.3f}  with-without {m:+.3f} [{lo:+.3f}, {hi:+.3f}] lower on {(d<0).sum()} of {d.size}",
        " | per table " + " ".join(f"{t} {x:+.3f}" for t, x in zip(NINE, d.mean(1))))
  if a in base: D.append(d)
m, lo, hi = ci(np.mean(D, 0))
print(f"DECISION (mean over the five baselines, paired by (table, seed), n={np.mean(D,0).size}): {m:+.3f} [{lo:+.3f}, {hi:+.3f}] -> {'ship' if hi < 0 else 'do not ship'}")
