"""Frozen surrogate network from a run's latest checkpoint, with sur_w set by hand: does following it help?"""
import sys, numpy as np, jax, time
from arrl.ppo import network
from arrl.ppo.checkpoint import OrbaxStore
from arrl.ppo.agent import AgentConfig
from arrl.ppo.features import FeatureConfig
from arrl.ppo.tasks import synthetic, nas_task
from arrl.pretrain import run_episodes
NET = network.NetConfig(surrogate=True)
pl = jax.tree_util.tree_flatten_with_path(network.structure(NET)[1])[0]
off = 0; idx = {}
for path, leaf in pl:
  name = "/".join(str(getattr(k, "key", k)) for k in path); idx[name] = (off, leaf.size); off += leaf.size
o_w = idx["sur_w/.value"][0]
flat = np.asarray(OrbaxStore(sys.argv[1] + "/ckpt").restore(None, {"params": network.init_params(NET, 0)})["params"])
cfg = AgentConfig(); feat = FeatureConfig(buckets=NET.buckets, history=cfg.history, max_edits=NET.max_edits)
rng = np.random.default_rng([77, 1])
tasks = [synthetic(rng, f"s{i}") for i in range(24)] + [nas_task(d) for d in ("cs", "physics", "photo", "computers") for _ in range(6)]
for w in [float(x) for x in sys.argv[2].split(",")]:
  p = flat.copy(); p[o_w] = w
  t0 = time.time()
  res = run_episodes(NET, feat, p, tasks, 100, [np.random.default_rng([77, 2, i]) for i in range(len(tasks))])
  m = np.array([np.mean((r.episode.regrets + [r.episode.regrets[-1]] * 100)[:100]) for r in res])
  print(f"sur_w {w:5.1f}: synthetic {m[:24].mean():.3f} nas {m[24:].mean():.3f} ({time.time()-t0:.0f}s)", flush=True)
