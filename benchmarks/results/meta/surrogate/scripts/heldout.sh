#!/bin/bash
# held-out NAS-Bench-Graph, run once after the decision (reporting only): NAME=DIR, within-run updates on;
# outputs under OUTBASE (default /work/runs/sur, where the surrogate network's ran)
cd /work/main
export PYTHONPATH=/work/main
name=$1; dir=$2; base=${3:-/work/runs/sur}
for d in cora citeseer pubmed; do
  python -m benchmarks.ppo_ablation --dataset $d --seeds 20 --queries 150 --init "$name=$dir" --only "$name" \
    --out $base/heldout_${name}_$d > $base/heldout_${name}_$d.log 2>&1 &
done
wait
date
