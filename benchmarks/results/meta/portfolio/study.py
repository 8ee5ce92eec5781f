"""Leave-one-table-out warm-start portfolio on the six NAS training tables (held-out three never read).
Portfolio: greedy, each step the program minimising the mean over the other nine-op training tables of the
min normalised regret so far (Feurer et al. 2015-style). Then an agent continues from the best measured."""
import sys, numpy as np
sys.path.insert(0, "/work/runs/pf")
from tables import load, DS
from arrl.pretrain import Episode
from arrl.ppo.tasks import nas_task
from arrl.agents.base import Proposal
from arrl.agents import make_agent
from arrl.agents.base import measured
T = load(); encs = T["encs"]; R = T["R"]
NINE = ("cs", "physics", "photo", "computers", "arxiv")
def portfolio(target, k):
  src = [d for d in NINE if d != target]
  M = np.stack([np.nan_to_num(R[d], nan=9.0) for d in src])     # [tables, encodings]
  cur = np.full(len(src), 9.0); out = []; used = set()
  for _ in range(k):
    gain = np.minimum(M, cur[:, None]).mean(0)
    for i in np.argsort(gain):
      if T["keys"][i] not in used: break
    used.add(T["keys"][i]); out.append(encs[i]); cur = np.minimum(cur, M[:, i])
  return out
class Warm:
  def __init__(self, inner, port, space):
    self.inner, self.name = inner, inner.name
    self.port = [p for p in (tree_of(space, e) for e in port) if p is not None]
  def propose(self, state):
    seen = measured(state)
    while self.port:
      p = self.port.pop(0)
      if p not in seen: return Proposal(tree=p, parent=state.current)
    return self.inner.propose(state)
  def observe(self, state, o): self.inner.observe(state, o)
def tree_of(space, e):
  try:
    t = space.from_params(dict(zip(("link", "op0", "op1", "op2", "op3"), e))); space.validate(t); return t
  except ValueError: return None
tasks = {d: nas_task(d) for d in DS}
def run(d, agent_name, k, seed, trials=150):
  t = tasks[d]; ep = Episode(t, trials)
  if agent_name.startswith("ppo"):
    init = agent_name.split(":", 1)[1] if ":" in agent_name else "pretrained"
    ag = make_agent("ppo", seed=seed, update_every=0, init_from=init)
  else:
    ag = make_agent(agent_name, seed=seed)
  if k: ag = Warm(ag, portfolio(d, k), t.space)
  while not ep.done:
    st = ep.state(); p = ag.propose(st); ep.step(p); ag.observe(ep.state(), ep.history[-1])
  r = ep.regrets[:trials]; return np.array(r + [r[-1]] * (trials - len(r)))
if __name__ == "__main__":
  agent = sys.argv[1]; ks = [int(x) for x in sys.argv[2].split(",")]; seeds = int(sys.argv[3])
  for k in ks:
    C = {d: np.array([run(d, agent, k, 7_000_000 + s) for s in range(seeds)]) for d in DS}
    a = np.concatenate(list(C.values()))
    print(f"{agent} k={k}: mean {a.mean():.3f} @10 {a[:,9].mean():.3f} @25 {a[:,24].mean():.3f} @50 {a[:,49].mean():.3f} @150 {a[:,-1].mean():.3f} | "
          + " ".join(f"{d} {C[d].mean():.3f}" for d in DS), flush=True)
