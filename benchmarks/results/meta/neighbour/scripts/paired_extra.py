"""Paired differences (mean regret over the run) between agents of one benchmarks.synthetic result, beyond --paired."""
import json, sys
import numpy as np
d = json.load(open(sys.argv[1]))
ag = d["agents"]
m = {a: np.mean(np.array(ag[a]["curves"]), axis=1) for a in ag}
for a, b in (pair.split("-") for pair in sys.argv[2:]):
  x = m[a] - m[b]; h = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
  print(f"{a} - {b}: {x.mean():+.3f} [{x.mean() - h:+.3f}, {x.mean() + h:+.3f}], lower on {(x < 0).sum()} of {len(x)}")
