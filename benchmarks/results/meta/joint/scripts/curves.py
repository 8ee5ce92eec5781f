import sys, numpy as np
for p in sys.argv[1:]:
  d = np.load(p); C = d["curves"]; nas = np.char.startswith(d["names"], "nas:")
  for sub, m in (("nas", nas), ("syn", ~nas)):
    if m.any():
      c = C[m]; print(p.split("/")[-1], sub, len(c), f"mean {c.mean():.3f} @25 {c[:,24].mean():.3f} @50 {c[:,49].mean():.3f} @100 {c[:,-1].mean():.3f}")
