#!/usr/bin/env bash
# One prepared GPU check (run through the device tool; ~8 minutes on an H100/H200, every step capped so the
# whole stays under 10). Writes everything under $OUT (copy into benchmarks/results/ with the card's name):
#   gpu.csv, devices.txt      the card and what jax sees
#   throughput.json           tokens/s and MFU of the gpu and cpu presets' train steps
#   attention.json            XLA vs cuDNN attention, forward+backward, on the gpu preset's shapes (S and L windows)
#   arrl/, arrl.log           one real `python -m arrl.main` trial (the default program, 60 s budget) with its log
#   trial_overhead.json       that trial's start-up / compile / training / other seconds and the loop's own overhead
# GPU_CHECK_PRESET (default gpu) and GPU_CHECK_BUDGET_S (default 60) shrink it for a CPU dry run
# (tests/test_gpu_check.py); GPU_CHECK_SKIP_INSTALL=1 skips the pip install.
set -uo pipefail
OUT="${OUT:-benchmarks/results/gpu}"
PRESET="${GPU_CHECK_PRESET:-gpu}"
BUDGET="${GPU_CHECK_BUDGET_S:-60}"
mkdir -p "$OUT"
export ARRL_CACHE="${ARRL_CACHE:-/tmp/arrl-cache}"
if [ "${GPU_CHECK_SKIP_INSTALL:-0}" != 1 ]; then
  timeout 60 python -m pip install -q -e ".[cuda]" 2>&1 | tail -2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
python -c "import jax; print(jax.devices())" | tee "$OUT/devices.txt"
presets="$PRESET"; [ "$PRESET" = gpu ] && presets=gpu,cpu
timeout 120 python -m benchmarks.throughput --presets "$presets" --steps 10 --out "$OUT/throughput.json" \
  > "$OUT/throughput.log" 2>&1; echo "throughput exit $?" | tee -a "$OUT/throughput.log"
timeout 90 python -m benchmarks.attention_check --preset "$PRESET" --steps 5 --out "$OUT/attention.json" \
  > "$OUT/attention.log" 2>&1; echo "attention exit $?" | tee -a "$OUT/attention.log"
start=$(date +%s.%N)
timeout 270 python -m arrl.main --preset "$PRESET" --budget-s "$BUDGET" --max-experiments 1 --noise-repeats 1 \
  --run-dir "$OUT/arrl" > "$OUT/arrl.log" 2>&1; echo "arrl exit $?" | tee -a "$OUT/arrl.log"
wall=$(python -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
python -m benchmarks.trial_overhead "$OUT/arrl" --wall-s "$wall" --out "$OUT/trial_overhead.json" > /dev/null
echo "trial_overhead exit $?"
tail -14 "$OUT/arrl.log"
