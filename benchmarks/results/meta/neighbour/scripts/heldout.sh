#!/bin/bash
# held-out NAS-Bench-Graph for the record: the surrogate run's script, outputs under /work/runs/ng
exec bash /work/main/benchmarks/results/meta/surrogate/scripts/heldout.sh "$1" "$2" /work/runs/ng
