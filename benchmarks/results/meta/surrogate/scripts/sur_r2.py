"""R^2 of a run's (latest) surrogate on fresh episodes (frozen network, its own sampling): synthetic and NAS tables."""
import sys, numpy as np, jax
from arrl.ppo import network
from arrl.ppo.checkpoint import OrbaxStore
from arrl.ppo.agent import AgentConfig
from arrl.ppo.features import FeatureConfig
from arrl.ppo.tasks import synthetic, nas_task
from arrl.pretrain import run_episodes, ppo_batch
NET = network.NetConfig(surrogate=True)
flat = np.asarray(OrbaxStore(sys.argv[1] + "/ckpt").restore(None, {"params": network.init_params(NET, 0)})["params"])
cfg = AgentConfig(); feat = FeatureConfig(buckets=NET.buckets, history=cfg.history, max_edits=NET.max_edits)
f = jax.jit(lambda p, act, s, v: network.build(NET, p).surrogate_loss(act, s, v))
for name, tasks in (("synthetic", [synthetic(np.random.default_rng([78, i])) for i in range(8)]),
                    ("arxiv", [nas_task("arxiv")] * 4), ("proteins", [nas_task("proteins")] * 4),
                    ("cs (trained on)", [nas_task("cs")] * 4)):
  res = run_episodes(NET, feat, flat, tasks, 100, [np.random.default_rng([78, 3, i]) for i in range(len(tasks))], targets=True)
  n = sum(len(r.transitions) for r in res)
  batch, _, _, _, tg = ppo_batch(res, 1.0, 0.95, n, np.random.default_rng(0))
  loss, spread = f(flat, batch.act, *tg)
  print(f"{name}: R2 {1 - float(loss) / float(spread):.3f} (spread {float(spread):.4f}, {n} transitions)", flush=True)
