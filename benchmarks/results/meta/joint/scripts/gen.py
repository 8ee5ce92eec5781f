"""Offline data for a neighbour surrogate: hill-climbing runs (a random fresh one-edit neighbour of the kept best,
or the surrogate's best-scored one with --policy FILE), and at every step every fresh neighbour's numbers
(arrl.ppo.neighbours) and its true gain (drop in normalised regret from the current program)."""
import argparse, sys, time
import numpy as np
from arrl.pretrain import Episode
from arrl.ppo.tasks import nas_task, synthetic
from arrl.ppo.features import HistoryStats, Candidates
from arrl.ppo.neighbours import neighbour_feats
from arrl.ppo.reward import RewardConfig
from arrl.agents.base import Proposal
from arrl.edits import make_edit

ap = argparse.ArgumentParser()
ap.add_argument("--nas", default="")
ap.add_argument("--nas-seeds", type=int, default=4)
ap.add_argument("--synthetic", type=int, default=0)
ap.add_argument("--syn-seed", type=int, default=0)
ap.add_argument("--trials", type=int, default=100)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--policy", default="")     # npz of a linear/MLP scorer: greedy on it (eps-random)
ap.add_argument("--eps", type=float, default=0.3)
ap.add_argument("--temp", type=float, default=0.0)
ap.add_argument("--out", required=True)
a = ap.parse_args()
cfg = RewardConfig()
tasks = [(nas_task(d), [a.seed, i, k]) for i, d in enumerate(filter(None, a.nas.split(","))) for k in range(a.nas_seeds)]
tasks += [(synthetic(np.random.default_rng([a.syn_seed, 424242, i])), [a.seed, 99, i]) for i in range(a.synthetic)]
scorer = None
if a.policy:
  from scorer import load
  scorer = load(a.policy)
X, Y, G, T, I = [], [], [], [], []
from arrl.ppo.features import hash_ids, setting
curves = []
t0 = time.time()
for ti, (task, seed) in enumerate(tasks):
  rng = np.random.default_rng(seed)
  ep = Episode(task, a.trials)
  gid = 0
  while not ep.done:
    state = ep.state()
    stats = HistoryStats.of(state, cfg, tally=ep.tally)
    c = Candidates.of(task.space, ep.current, set(), stats)
    where, F = neighbour_feats(state, c, stats)
    here = ep.oracle(c.tree)
    y = np.array([here - ep.oracle(c.children[s][i]) for s, i in where], np.float32)
    I.append(np.array([[hash_ids(f'{s[1]}={c.settings[s][i][1]}', 4096)[0], hash_ids(f'{s[1]}={setting(c.tree, s[1])}', 4096)[0]] for s, i in where], np.int32).reshape(-1, 2))
    X.append(F); Y.append(y); G.append(np.full(len(y), ti * 10000 + gid)); T.append(np.full(len(y), ti))
    gid += 1
    ids = I[-1]
    if scorer is not None and a.temp > 0:
      sc = scorer(F, ids); p = np.exp((sc - sc.max()) / a.temp); k = int(rng.choice(len(p), p=p / p.sum()))
    elif scorer is not None and rng.random() >= a.eps:
      k = int(np.argmax(scorer(F, ids)))
    else:
      k = int(rng.integers(len(where)))
    s, i = where[k]
    e = make_edit(s, c.values[s][i])
    ep.step(Proposal(tree=task.space.apply(ep.current, e), parent=ep.current, edits=(e,)))
  curves.append(ep.regrets[:a.trials] + [ep.regrets[-1]] * (a.trials - len(ep.regrets[:a.trials])))
  print(f"{task.name} {seed} mean regret {np.mean(curves[-1]):.3f} ({time.time()-t0:.0f}s)", file=sys.stderr, flush=True)
np.savez(a.out, I=np.concatenate(I), X=np.concatenate(X), Y=np.concatenate(Y), G=np.concatenate(G), T=np.concatenate(T),
         curves=np.array(curves), names=np.array([t.name for t, _ in tasks]))
