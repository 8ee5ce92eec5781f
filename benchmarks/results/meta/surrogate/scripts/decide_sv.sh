#!/bin/bash
# the inference-time variant (sites scored by their values) on fresh batches: (1') arxiv+proteins batch 8, (2') synthetic batch 7
cd /work/main
export PYTHONPATH=/work/main
set -x
R=/work/runs/sur
date; uptime
python -m benchmarks.synthetic --nas-train arxiv,proteins --seeds 16 --batch 8 --queries 150 --agents "" \
  --init surrogate-sv=$R/best_sv --init surrogate=$R/best --init shipped=arrl/ppo/pretrained --paired shipped \
  --out $R/decision_sv_nas > $R/decision_sv_nas.log 2>&1 &
python -m benchmarks.synthetic --batch 7 --tasks 16 --queries 100 --agents "" \
  --init surrogate-sv=$R/best_sv --init surrogate=$R/best --init shipped=arrl/ppo/pretrained --paired shipped \
  --out $R/decision_sv_syn > $R/decision_sv_syn.log 2>&1 &
wait
date; uptime
