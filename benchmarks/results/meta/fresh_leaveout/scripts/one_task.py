"""One-off check (2026-12-02), kept to say how `../one_task*.txt` were made: can meta-training's PPO learn ONE fixed
synthetic task (the same task in all 8 episodes of every iteration; a fresh network, seed 7, lr 3e-4)?
Options after TASK ITERS LR: "shuffle" (--hash-shuffle) and "table=S" (--table-init S). Run from the repository root:

    PYTHONPATH=. python benchmarks/results/meta/fresh_leaveout/scripts/one_task.py 1 40 3e-4             # one_task.txt
    PYTHONPATH=. python .../one_task.py 1 40 3e-4 shuffle            # one_task_shuffled.txt
    PYTHONPATH=. python .../one_task.py 1 40 3e-4 shuffle table=0    # one_task_shuffled_table0.txt
    PYTHONPATH=. python .../one_task.py 2 40 3e-4 shuffle [table=0]  # one_task2_shuffled[_table0].txt

(The table=0 logs were made by an earlier form of this script that zeroed the table after initialising; the
parameters are the same as `--table-init 0`'s, see tests/test_pretrain.py.)
"""
import sys, tempfile, numpy as np
from arrl.pretrain import Config, Pretrainer
from arrl.ppo.tasks import synthetic
task_seed, iters, lr = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
opts = sys.argv[4:]
table = next((float(o.split("=")[1]) for o in opts if o.startswith("table=")), 1.0)
with tempfile.TemporaryDirectory() as out:
  pt = Pretrainer(Config(out=out, envs=8, trials=100, seed=7, data=("synthetic",), lr=lr,
                         hash_shuffle="shuffle" in opts, table_init=table))
  task = synthetic(np.random.default_rng([555, task_seed]))
  pt.tasks = lambda rng, n: [task] * n
  regs = []
  for it in range(1, iters + 1):
    m = pt.iterate(it)
    regs.append(m["train_regret"])
    if it % 5 == 0:
      print(f"it {it}: train regret (mean over run, 8 episodes) last5 {np.mean(regs[-5:]):.3f}  edits {m['edits_per_proposal']:.2f} "
            f"ent {m['entropy']:.2f} kl {m['approx_kl']:.3f}", flush=True)
