"""Spearman correlation of validation accuracy between the five nine-operation NAS-Bench-Graph training tables
(the held-out three are never read), and what the leave-one-out mean rank of the other four finds in 25 queries."""
import numpy as np
from benchmarks.nasbench_graph import NasBenchGraph
ds = ("cs", "physics", "photo", "computers", "arxiv")
T = {d: NasBenchGraph(d).table for d in ds}
keys = sorted(set.intersection(*[set(t) for t in T.values()]))
def rank(a):
  r = np.empty(len(a)); r[np.argsort(a)] = np.arange(len(a)); return r
R = {d: rank(np.array([T[d][k].valid for k in keys])) for d in ds}
print(len(keys), "architectures in all five")
for a in ds:
  print(f"{a:10s}", " ".join(f"{np.corrcoef(R[a], R[b])[0, 1]:.2f}" for b in ds))
for d in ds:
  top = np.argsort(-np.mean([R[o] for o in ds if o != d], 0))[:25]
  allv = np.array([T[d][k].valid for k in keys]); best, med = allv.max(), np.median(allv)
  v = allv[top]
  print(f"{d}: the other four's top 25 by mean rank: best normalised regret {(best - v.max()) / (best - med):.3f}, mean {(best - v.mean()) / (best - med):.3f}")
