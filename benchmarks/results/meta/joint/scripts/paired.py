"""Paired (same task, same seed) differences in mean regret over the run: each file against the first."""
import sys, numpy as np
base = np.load(sys.argv[1]); nas = np.char.startswith(base["names"], "nas:")
for p in sys.argv[2:]:
  d = np.load(p); diff = d["curves"].mean(1) - base["curves"].mean(1)
  out = []
  for sub, m in (("nas", nas), ("syn", ~nas)):
    x = diff[m]; h = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    out.append(f"{sub} {x.mean():+.3f} [{x.mean()-h:+.3f}, {x.mean()+h:+.3f}] lower on {np.sum(x<0)}/{len(x)}")
  print(p.split("/")[-1], "-", sys.argv[1].split("/")[-1], " | ".join(out))
