"""Per choice: the spread (std over the legal candidates) of the guide term sur_w x pred vs of the whole logits."""
import sys, numpy as np, jax, jax.numpy as jnp
from arrl.ppo import network
from arrl.ppo.checkpoint import OrbaxStore
from arrl.ppo.agent import AgentConfig
from arrl.ppo.features import FeatureConfig
from arrl.ppo.tasks import synthetic, nas_task
from arrl.pretrain import run_episodes, ppo_batch
from arrl.ppo.batch import KIND_STOP
NET = network.NetConfig(surrogate=True)
flat = np.asarray(OrbaxStore(sys.argv[1] + "/ckpt").restore(None, {"params": network.init_params(NET, 0)})["params"])
cfg = AgentConfig(); feat = FeatureConfig(buckets=NET.buckets, history=cfg.history, max_edits=NET.max_edits)
tasks = [nas_task("arxiv")] * 4 + [nas_task("proteins")] * 4
res = run_episodes(NET, feat, flat, tasks, 100, [np.random.default_rng([79, 3, i]) for i in range(len(tasks))], targets=True)
n = sum(len(r.transitions) for r in res)
batch, _, _, _, tg = ppo_batch(res, 1.0, 0.95, n, np.random.default_rng(0))
m = network.build(NET, jnp.asarray(flat))
w = float(m.sur_w[...])
pv = np.asarray(m.predict(batch.act.values))[:, 0]; tv = tg[1][:, 0]
mask = np.asarray(batch.act.values.mask[:, 0]) & np.asarray(batch.act.value_on[:, 0])[:, None]
ps = np.asarray(m.predict(batch.act.sites))[:, 0]; ts = tg[0][:, 0]
ms = np.asarray(batch.act.sites.mask[:, 0]) & (np.asarray(batch.act.sites.kind[:, 0]) != KIND_STOP)
def stats(p, t, mk, name):
  sp = [p[i][mk[i]].std() for i in range(len(p)) if mk[i].sum() > 1]
  st = [t[i][mk[i]].std() for i in range(len(p)) if mk[i].sum() > 1]
  cor = [np.corrcoef(p[i][mk[i]], t[i][mk[i]])[0, 1] for i in range(len(p)) if mk[i].sum() > 2 and t[i][mk[i]].std() > 0 and p[i][mk[i]].std() > 0]
  top = [t[i][mk[i]][np.argmax(p[i][mk[i]])] - t[i][mk[i]].mean() for i in range(len(p)) if mk[i].sum() > 1]
  best = [t[i][mk[i]].max() - t[i][mk[i]].mean() for i in range(len(p)) if mk[i].sum() > 1]
  print(f"{name}: sur_w {w:.2f}, pred std {np.mean(sp):.4f} (x w = {w*np.mean(sp):.2f} logits), target std {np.mean(st):.4f}, "
        f"within-choice corr {np.nanmean(cor):.3f}, argmax gain over mean {np.mean(top):.4f} (oracle {np.mean(best):.4f})")
stats(ps, ts, ms, "sites step 0"); stats(pv, tv, mask, "values step 0")
