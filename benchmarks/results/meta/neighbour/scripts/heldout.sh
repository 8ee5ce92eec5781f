#!/bin/bash
# held-out NAS-Bench-Graph, run once after the decision (reporting only): NAME=DIR, within-run updates on
cd /work/main
export PYTHONPATH=/work/main
name=$1; dir=$2
for d in cora citeseer pubmed; do
  python -m benchmarks.ppo_ablation --dataset $d --seeds 20 --queries 150 --init "$name=$dir" --only "$name" \
    --out /work/runs/ng/heldout_${name}_$d > /work/runs/ng/heldout_${name}_$d.log 2>&1 &
done
wait
date
