#!/bin/bash
# ship-to dir of the run's best point (no further training: --iterations = the run's), then the pre-set measures
# (1) arxiv+proteins batch 9 and (2) synthetic batch 8, frozen networks + the random agent, side by side
cd /work/main
export PYTHONPATH=/work/main
set -x
R=/work/runs/ng
it=$(python -c "import json;print(json.load(open('$R/run/progress.json'))['iteration'])")
python -m arrl.pretrain --out $R/run --neighbour-scorer $R/scorer.npz --hash-shuffle --table-init 0 \
  --datasets cs,physics,photo,computers --eval-datasets arxiv,proteins --eval-nas 4 --lr 3e-4 --nas-share 0.5 --seed 7 \
  --envs 8 --trials 100 --eval-every 10 --iterations $it --ship-to $R/best --ship-best > $R/ship.log 2>&1
date; uptime
python -m benchmarks.synthetic --nas-train arxiv,proteins --seeds 16 --batch 9 --queries 150 --agents random \
  --init neighbour=$R/best --init surrogate=/work/runs/sur/best --init shipped=arrl/ppo/pretrained \
  --paired shipped --out $R/decision_nas > $R/decision_nas.log 2>&1 &
python -m benchmarks.synthetic --batch 8 --tasks 16 --queries 100 --agents random \
  --init neighbour=$R/best --init surrogate=/work/runs/sur/best --init shipped=arrl/ppo/pretrained \
  --paired shipped --out $R/decision_syn > $R/decision_syn.log 2>&1 &
wait
date; uptime
