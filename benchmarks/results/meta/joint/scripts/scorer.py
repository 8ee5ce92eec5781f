"""A small MLP neighbour scorer (numpy forward, optax fit), and its metrics by choice group."""
import numpy as np

def forward(w, X):
  h = X
  n = len([k for k in w if k.startswith("W")])
  for i in range(n):
    h = h @ w[f"W{i}"] + w[f"b{i}"]
    if i < n - 1:
      h = h * 0.5 * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))  # gelu (tanh)
  return h[:, 0]

def forward_id(w, X, I):
  out = forward(w, X)
  if "E" in w and I is not None:
    out = out + w["E"][I[:, 0]] - w["E"][I[:, 1]]
  return out

def load(path):
  w = dict(np.load(path))
  return lambda X, I=None: forward_id(w, X, I)

def fit(X, Y, hidden=(64, 64), steps=3000, lr=3e-3, seed=0, wd=1e-4, batch=4096, I=None):
  import jax, jax.numpy as jnp, optax
  rng = np.random.default_rng(seed)
  sizes = [X.shape[1], *hidden, 1]
  w = {}
  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    w[f"W{i}"] = rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32) * (0.1 if i == len(sizes) - 2 else 1)
    w[f"b{i}"] = np.zeros(b, np.float32)
  n = len(sizes) - 1
  if I is not None:
    w["E"] = np.zeros(4096, np.float32)
  def f(w, X, I=None):
    h = X
    for i in range(n):
      h = h @ w[f"W{i}"] + w[f"b{i}"]
      if i < n - 1: h = jax.nn.gelu(h)
    out = h[:, 0]
    return out if I is None else out + w["E"][I[:, 0]] - w["E"][I[:, 1]]
  tx = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=wd)
  w = jax.tree.map(jnp.asarray, w); o = tx.init(w)
  @jax.jit
  def step(w, o, xb, yb, ib):
    l, g = jax.value_and_grad(lambda w: jnp.mean((f(w, xb, ib) - yb) ** 2))(w)
    u, o = tx.update(g, o, w)
    return optax.apply_updates(w, u), o, l
  for t in range(steps):
    idx = rng.integers(0, len(X), batch)
    w, o, l = step(w, o, X[idx], Y[idx], None if I is None else I[idx])
  return {k: np.asarray(v) for k, v in w.items()}

def metrics(pred, Y, G):
  """R2 (raw), R2 within groups (centred), mean within-group Pearson, top-1: true gain of the argmax - group mean,
  as a share of (best - mean)."""
  r2 = 1 - ((pred - Y) ** 2).mean() / ((Y - Y.mean()) ** 2).mean()
  order = np.argsort(G, kind="stable"); G, Y, pred = G[order], Y[order], pred[order]
  cuts = np.flatnonzero(np.diff(G)) + 1
  cs, top, num, den = [], [], 0.0, 0.0
  for y, p in zip(np.split(Y, cuts), np.split(pred, cuts)):
    if len(y) < 3 or y.std() < 1e-9: continue
    yc, pc = y - y.mean(), p - p.mean()
    num += (yc * pc).sum(); den += 0
    if pc.std() > 0: cs.append(np.corrcoef(y, p)[0, 1])
    top.append((y[np.argmax(p)] - y.mean()) / (y.max() - y.mean()))
  return dict(r2=float(r2), corr=float(np.mean(cs)), top1=float(np.mean(top)))
