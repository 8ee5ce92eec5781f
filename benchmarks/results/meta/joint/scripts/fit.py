"""Fits neighbour scorers on train npz files, reports metrics on valid ones (NAS and synthetic apart)."""
import argparse
import numpy as np
from scorer import fit, forward_id, metrics

ap = argparse.ArgumentParser()
ap.add_argument("--train", nargs="+"); ap.add_argument("--valid", nargs="+")
ap.add_argument("--hidden", default="64,64"); ap.add_argument("--steps", type=int, default=3000)
ap.add_argument("--centre", action="store_true"); ap.add_argument("--target", default="gain"); ap.add_argument("--only", default=""); ap.add_argument("--ids", action="store_true"); ap.add_argument("--save", default="")
a = ap.parse_args()

def load(paths):
  parts = [np.load(p) for p in paths]
  X = np.concatenate([p["X"] for p in parts]); Y = np.concatenate([p["Y"] for p in parts])
  G = np.concatenate([p["G"] + 10**7 * j for j, p in enumerate(parts)])
  nas = np.concatenate([np.char.startswith(p["names"][p["T"]], "nas:") for p in parts])
  I = np.concatenate([p["I"] for p in parts]) if "I" in parts[0] else None
  return X, Y, G, nas, I

def centred(Y, G):
  out = Y.copy()
  for g in np.unique(G):
    m = G == g; out[m] -= Y[m].mean()
  return out

X, Y, G, nas, I = load(a.train)
Xv, Yv, Gv, nasv, Iv = load(a.valid)
if a.only:
  keep = nas if a.only == "nas" else ~nas
  X, Y, G, nas, I = X[keep], Y[keep], G[keep], nas[keep], I[keep]
if a.target == "ei":
  Y, Yv = np.maximum(Y, 0), np.maximum(Yv, 0)
elif a.target == "pi":
  Y, Yv = (Y > 1e-6).astype(np.float32), (Yv > 1e-6).astype(np.float32)
print("train rows", len(X), "valid rows", len(Xv))
Yt = centred(Y, G) if a.centre else Y
# linear baseline
A = np.c_[X, np.ones(len(X))]; w, *_ = np.linalg.lstsq(A, Yt, rcond=None)
pl = np.c_[Xv, np.ones(len(Xv))] @ w
hidden = tuple(int(h) for h in a.hidden.split(",") if h)
W = fit(X, Yt, hidden, a.steps, I=I if a.ids else None)
pm = forward_id(W, Xv, Iv)
for name, p in (("linear", pl), ("mlp", pm)):
  for sub, m in (("nas", nasv), ("syn", ~nasv)):
    print(name, sub, {k: round(v, 3) for k, v in metrics(p[m], Yv[m], Gv[m]).items()})
if a.save:
  np.savez(a.save, **W)
