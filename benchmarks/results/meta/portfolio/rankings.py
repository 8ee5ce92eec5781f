"""Which agent is best per training table? From the decision runs (loo/dec_*.json: five nine-operation training
tables x 20 seeds, 150 queries, six agents with and without the leave-one-out portfolio). Counts the triples of
tables on which one agent is lowest on all three (the held-out target asks that on cora, citeseer and pubmed)."""
import itertools, json, os
import numpy as np
HERE = os.path.dirname(os.path.abspath(__file__))
NINE = ("cs", "physics", "photo", "computers", "arxiv")
agents = {}
for a in ("random", "greedy", "local", "evolution", "tpe", "ppo-frozen"):
  r = json.load(open(os.path.join(HERE, "loo", f"dec_{a}.json")))
  for w, tag in (("False", a), ("True", a + "+pf")):
    agents[tag] = {d: np.array(r[f"{w}:{d}"]) for d in NINE}   # [seeds, 150]
for q, lab in ((49, "@50"), (149, "@150"), (None, "mean over the run")):
  print(lab)
  best = {}
  for d in NINE:
    m = {a: (v[d][:, q].mean() if q is not None else v[d].mean()) for a, v in agents.items()}
    order = sorted(m, key=m.get)
    best[d] = order[0]
    print(f"  {d:10s} best {order[0]:14s} {m[order[0]]:.3f}  2nd {order[1]:14s} {m[order[1]]:.3f}  worst {order[-1]} {m[order[-1]]:.3f}")
  wins = {a: sum(all(best[d] == a for d in t) for t in itertools.combinations(NINE, 3)) for a in agents}
  print("  triples of tables with one agent lowest on all three:", sum(wins.values()), "of 10")
