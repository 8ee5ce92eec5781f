"""Encodings of the NAS-Bench-Graph grid -> canonical keys, and normalised regret per training table (cached)."""
import itertools, os, pickle, time
import numpy as np
from benchmarks.nasbench_graph import NasBenchGraph, OP_FIELDS
CACHE = "/work/runs/pf/tables.pkl"
DS = ("cs", "physics", "photo", "computers", "arxiv", "proteins")
def load():
  if os.path.exists(CACHE):
    return pickle.load(open(CACHE, "rb"))
  t0 = time.time()
  B = {d: NasBenchGraph(d) for d in DS}
  b = B["cs"]
  encs = [(l, *ops) for l in b.links for ops in itertools.product(b.ops, repeat=4)]
  keys = np.array([b._key(e[0], tuple(e[1:])) for e in encs])
  R = {}
  for d in DS:
    t = B[d].table; valid = np.array([r.valid for r in t.values()]); best, med = valid.max(), np.median(valid)
    R[d] = np.array([(best - t[k].valid) / (best - med) if k in t else np.nan for k in keys])
  out = dict(encs=encs, keys=keys, R=R)
  pickle.dump(out, open(CACHE, "wb")); print("built in", time.time() - t0)
  return out
if __name__ == "__main__":
  o = load(); print(len(o["encs"]), {d: int(np.isfinite(r).sum()) for d, r in o["R"].items()})
