#!/bin/bash
# ship-to dir of the run's best point (resume: no further training), a copy with the guide weight at 0 (ablation),
# then the pre-set measures (1) and (2)
cd /work/main
export PYTHONPATH=/work/main
set -x
R=/work/runs/sur
it=$(python -c "import json;print(json.load(open('$R/run/progress.json'))['iteration'])")
python -m arrl.pretrain --out $R/run --surrogate --guide 30 --hash-shuffle --table-init 0 --datasets cs,physics,photo,computers \
  --eval-datasets arxiv,proteins --eval-nas 4 --lr 3e-4 --nas-share 0.5 --seed 5 --envs 8 --trials 100 --eval-every 10 \
  --iterations $it --ship-to $R/best --ship-best > $R/ship.log 2>&1
python $R/zero_guide.py $R/best $R/best_noguide
date; uptime
python -m benchmarks.synthetic --nas-train arxiv,proteins --seeds 16 --batch 7 --queries 150 --agents "" \
  --init surrogate=$R/best --init surrogate-w0=$R/best_noguide --init shipped=arrl/ppo/pretrained \
  --init table0=/work/runs/fresh_table0_best --paired shipped --out $R/decision_nas > $R/decision_nas.log 2>&1 &
python -m benchmarks.synthetic --batch 6 --tasks 16 --queries 100 --agents "" \
  --init surrogate=$R/best --init surrogate-w0=$R/best_noguide --init shipped=arrl/ppo/pretrained \
  --init table0=/work/runs/fresh_table0_best --paired shipped --out $R/decision_syn > $R/decision_syn.log 2>&1 &
wait
date; uptime
