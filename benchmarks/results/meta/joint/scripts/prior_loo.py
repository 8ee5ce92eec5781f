"""Is there an identity prior worth carrying across NAS-Bench-Graph datasets? Leave-one-out over the six training
tables only (the held-out three are never read): an additive prior (each (field, value)'s mean normalised regret
over the programs having it, averaged over the other training tables) scores each fresh one-edit neighbour of the
kept best; hill climbing picks by softmax(-prior/temp) (temp None = uniform: the `random` agent's rule)."""
import numpy as np
from arrl.pretrain import Episode
from arrl.ppo.tasks import nas_task, NAS_TRAIN
from arrl.ppo.features import HistoryStats, Candidates
from arrl.ppo.reward import RewardConfig
from arrl.agents.base import Proposal
from arrl.edits import make_edit
from arrl.tree import flatten

tasks = {d: nas_task(d) for d in NAS_TRAIN}
bench = {d: t.space for d, t in tasks.items()}
def marginals(d):
  from benchmarks.nasbench_graph import NasBenchGraph, OP_FIELDS
  t = tasks[d]; sp = t.space
  # sample programs uniformly from the space to estimate marginals
  rng = np.random.default_rng(0); acc = {}
  for _ in range(4000):
    tr = sp.sample(rng)
    r = t.regret(flatten(tr))
    for k, v in flatten(tr).items():
      acc.setdefault((k, str(v)), []).append(r)
  return {k: np.mean(v) for k, v in acc.items()}
M = {d: marginals(d) for d in NAS_TRAIN}
def prior(d):
  others = [M[o] for o in NAS_TRAIN if o != d]
  keys = set().union(*others)
  return {k: np.mean([m[k] for m in others if k in m]) for k in keys}
cfg = RewardConfig()
def run(d, temp, seed, trials=150):
  rng = np.random.default_rng(seed); P = prior(d); t = tasks[d]
  ep = Episode(t, trials)
  while not ep.done:
    stats = HistoryStats.of(ep.state(), cfg, tally=ep.tally)
    c = Candidates.of(t.space, ep.current, set(), stats)
    opts = [(s, i) for s in c.sites for i, f in enumerate(c.fresh[s]) if f]
    if temp is None:
      k = int(rng.integers(len(opts)))
    else:
      sc = np.array([-sum(P.get((kk, str(v)), 1.0) for kk, v in flatten(c.children[s][i]).items()) for s, i in opts])
      p = np.exp((sc - sc.max()) / temp); k = int(rng.choice(len(opts), p=p / p.sum()))
    s, i = opts[k]; e = make_edit(s, c.values[s][i])
    ep.step(Proposal(tree=t.space.apply(ep.current, e), parent=ep.current, edits=(e,)))
  r = ep.regrets[:trials]; return np.array(r + [r[-1]] * (trials - len(r)))
for temp in (None, 0.3, 0.1, 0.03):
  C = {d: np.array([run(d, temp, [5, s]) for s in range(12)]) for d in NAS_TRAIN}
  allc = np.concatenate(list(C.values()))
  print(f"temp {temp}: mean {allc.mean():.3f} @25 {allc[:,24].mean():.3f} @50 {allc[:,49].mean():.3f} @150 {allc[:,-1].mean():.3f} | "
        + " ".join(f"{d} {C[d].mean():.3f}" for d in NAS_TRAIN), flush=True)
