"""Paired differences of mean regret over the run between two agents of a benchmarks.synthetic JSON (t-interval)."""
import json, sys
import numpy as np
from scipy import stats
d = json.load(open(sys.argv[1]))
def run_means(name):
  c = np.array(d["agents"][name]["curves"], float)
  return c.mean(1)
for pair in sys.argv[2:]:
  x, y = pair.split(":")
  diff = run_means(x) - run_means(y)
  h = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
  print(f"{x} - {y}: {diff.mean():+.3f} [{diff.mean() - h:+.3f}, {diff.mean() + h:+.3f}], lower on {(diff < 0).sum()} of {len(diff)}")
