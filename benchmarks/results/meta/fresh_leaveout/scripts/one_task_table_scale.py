"""One-off check (2026-12-02), kept to say how `../one_task*_shuffled*.txt` were made: one_task.py with
--hash-shuffle, the fresh network's hashed-string table scaled by S at init (is the numeric pathway drowned by
random identity rows?). `--table-init S` of arrl.pretrain does the same since. Run from the repository root:
PYTHONPATH=. python .../scripts/one_task_table_scale.py TASK 40 3e-4 S   (TASK 1 and 2, S 0.0 and 1.0)
"""
import sys, tempfile, numpy as np, jax
from arrl.pretrain import Config, Pretrainer
from arrl.ppo import network
from arrl.ppo.tasks import synthetic
task_seed, iters, lr, scale = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
with tempfile.TemporaryDirectory() as out:
  pt = Pretrainer(Config(out=out, envs=8, trials=100, seed=7, data=("synthetic",), lr=lr, hash_shuffle=True))
  flat = np.array(pt.params)
  off = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(network.structure(pt.net_cfg)[1])[0]:
    names = [str(getattr(k, "key", k)) for k in path]
    if names[0] == "table":
      flat[off:off + leaf.size] *= scale
      print("scaled", names, leaf.shape)
    off += leaf.size
  pt.params = jax.numpy.asarray(flat)
  task = synthetic(np.random.default_rng([555, task_seed]))
  pt.tasks = lambda rng, n: [task] * n
  regs = []
  for it in range(1, iters + 1):
    m = pt.iterate(it)
    regs.append(m["train_regret"])
    if it % 5 == 0:
      print(f"it {it}: train regret last5 {np.mean(regs[-5:]):.3f}  edits {m['edits_per_proposal']:.2f} ent {m['entropy']:.2f} kl {m['approx_kl']:.3f}", flush=True)
