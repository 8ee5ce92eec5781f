#!/usr/bin/env bash
# One prepared GPU check (run through the device tool; ~8 minutes on an H100):
#   installs the CUDA extra, measures throughput/MFU of the gpu and cpu presets, runs a 60 s budgeted
#   training run of the gpu preset on the embedded corpus, and writes everything under $OUT
#   (copy into benchmarks/results/ with the card's name).
set -uo pipefail
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
export ARRL_CACHE="${ARRL_CACHE:-/tmp/arrl-cache}"
python -m pip install -q -e ".[cuda]" 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
python -c "import jax; print(jax.devices())" | tee "$OUT/devices.txt"
timeout 240 python -m benchmarks.throughput --presets gpu,cpu --steps 10 --out "$OUT/throughput.json" \
  > "$OUT/throughput.log" 2>&1; echo "throughput exit $?" | tee -a "$OUT/throughput.log"
timeout 300 python -m nanochat_jax.train --preset gpu --budget-s 60 > "$OUT/train60.log" 2>&1
echo "train exit $?" | tee -a "$OUT/train60.log"
tail -14 "$OUT/train60.log"
