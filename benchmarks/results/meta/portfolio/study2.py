"""The decision runs of decision_rule.md through the product code: make_agent(name, warm_start=LOO file)."""
import sys, json, numpy as np
from arrl.pretrain import Episode
from arrl.ppo.tasks import nas_task
from arrl.agents import make_agent
NINE = ("cs", "physics", "photo", "computers", "arxiv")
def run(d, name, warm, seed, trials=150):
  t = nas_task(d); ep = Episode(t, trials)
  kw = {"update_every": 0} if name == "ppo-frozen" else {}
  ag = make_agent("ppo" if name.startswith("ppo") else name, seed=seed,
                  warm_start=f"/work/runs/pf/loo_{d}.json" if warm else "none", **kw)
  while not ep.done:
    p = ag.propose(ep.state()); ep.step(p); ag.observe(ep.state(), ep.history[-1])
  r = ep.regrets[:trials]; return r + [r[-1]] * (trials - len(r))
if __name__ == "__main__":
  name, seeds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
  res = {}
  for warm in (False, True):
    for d in NINE:
      res[f"{warm}:{d}"] = [run(d, name, warm, 7_100_000 + s) for s in range(seeds)]
      a = np.array(res[f"{warm}:{d}"]); print(name, "portfolio" if warm else "none", d, f"{a.mean():.3f}", flush=True)
  json.dump(res, open(out, "w"))
