#!/bin/bash
# the ablation row "a fresh network, never updated" on the held-out tables, once, 20 seeds x 150 queries
cd /work/main
d=$1
python -m benchmarks.run --suite full --no-lm --agents ppo-fresh-frozen --datasets $d --nas-seeds 20 --nas-queries 150 --out /work/runs/heldout/ff_$d > /work/runs/heldout/ff_$d.log 2>&1
