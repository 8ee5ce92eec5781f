"""One-off check (2026-12-02), kept to say how `../init_grid.txt` was made: agents on the six NAS-Bench-Graph
TRAINING tables (never the held-out ones), 4 agent seeds each from 8,000,000 (unused elsewhere), 150 queries,
networks frozen; mean normalised regret over the run (0 = the table's best validation accuracy, 1 = its median),
the regret after 50 and after 150 queries. Run from the repository root:

    PYTHONPATH=. python benchmarks/results/meta/fresh_leaveout/scripts/init_grid.py \
        cs,physics,photo,computers,arxiv,proteins 4 "$CONF" 8000000

with CONF the JSON {name: [agent, agent_kwargs]} listed in ../init_grid.txt's rows (the fresh rows: "ppo" with
init_from "none", update_every 0 and the given prior / stop_bias; "net80 frozen": init_from = the 80-iteration
network, arrl/ppo/pretrained at 47e43bd).
"""
import sys, json, time, itertools
import numpy as np
import arrl.search
from arrl.ppo.tasks import nas_task
ds = sys.argv[1].split(","); seeds = int(sys.argv[2]); configs = json.loads(sys.argv[3]); base = int(sys.argv[4])
tasks = {d: nas_task(d) for d in ds}
def run(task, agent, kw, seed):
  r = arrl.search.search(task.space, task.objective, agent=agent, max_trials=150, seed=seed, noise_repeats=1,
                         false_keep=0.5, agent_kwargs=kw)
  best, curve = np.inf, []
  for t in r.trials:
    if t.cached: continue
    if t.score is not None: best = min(best, t.score)
    curve.append((best - task.optimum) / task.scale)
  curve += [curve[-1]] * (150 - len(curve))
  return float(np.mean(curve[:150])), curve[49], curve[149]
for name, (agent, kw) in configs.items():
  t0 = time.time(); res = []
  for d in ds:
    for k in range(seeds):
      res.append(run(tasks[d], agent, kw, base + k))
  R = np.array(res)
  print(f"{name:30s} mean {R[:,0].mean():.3f} (se {R[:,0].std(ddof=1)/np.sqrt(len(R)):.3f}) @50 {R[:,1].mean():.3f} @150 {R[:,2].mean():.3f}  {time.time()-t0:.0f}s", flush=True)
