"""Run 2 (sites guided by their values): within-choice correlation of a site's guide score (batch.GUIDE) with its
target, and of the values' scores with theirs, on fresh synthetic tasks and on arxiv+proteins (latest checkpoint)."""
import sys, numpy as np, jax, jax.numpy as jnp
from arrl.ppo import network
from arrl.ppo.checkpoint import OrbaxStore
from arrl.ppo.agent import AgentConfig
from arrl.ppo.features import FeatureConfig
from arrl.ppo.tasks import synthetic, nas_task
from arrl.pretrain import run_episodes, ppo_batch
from arrl.ppo.batch import GUIDE, KIND_STOP
NET = network.NetConfig(surrogate=True, site_guide_from_values=True)
flat = np.asarray(OrbaxStore(sys.argv[1] + "/ckpt").restore(None, {"params": network.init_params(NET, 0)})["params"])
cfg = AgentConfig(); feat = FeatureConfig(buckets=NET.buckets, history=cfg.history, max_edits=NET.max_edits)
for name, tasks in (("synthetic", [synthetic(np.random.default_rng([80, i])) for i in range(8)]),
                    ("arxiv+proteins", [nas_task("arxiv")] * 4 + [nas_task("proteins")] * 4)):
  res = run_episodes(NET, feat, flat, tasks, 100, [np.random.default_rng([80, 3, i]) for i in range(8)], targets=True)
  n = sum(len(r.transitions) for r in res)
  batch, _, _, _, tg = ppo_batch(res, 1.0, 0.95, n, np.random.default_rng(0))
  g = np.asarray(batch.act.sites.nums[:, 0, :, GUIDE]); ts = tg[0][:, 0]
  ms = np.asarray(batch.act.sites.mask[:, 0]) & (np.asarray(batch.act.sites.kind[:, 0]) != KIND_STOP)
  cor = [np.corrcoef(g[i][ms[i]], ts[i][ms[i]])[0, 1] for i in range(n) if ms[i].sum() > 2 and ts[i][ms[i]].std() > 0 and g[i][ms[i]].std() > 0]
  top = [ts[i][ms[i]][np.argmax(g[i][ms[i]])] - ts[i][ms[i]].mean() for i in range(n) if ms[i].sum() > 1]
  best = [ts[i][ms[i]].max() - ts[i][ms[i]].mean() for i in range(n) if ms[i].sum() > 1]
  print(f"{name}: sites guided by values: corr {np.nanmean(cor):.3f}, argmax gain {np.mean(top):.4f} (oracle {np.mean(best):.4f}); mean guide {np.mean(g[ms]):.3f} vs mean target {np.mean(ts[ms]):.3f}", flush=True)
