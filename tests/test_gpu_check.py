"""benchmarks/gpu_check.sh runs end to end on a CPU (tiny preset, 2 s budget), so the GPU run spends no device
time on a broken entry point or flag."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_dry_run_on_cpu(tmp_path):
  out = tmp_path / "out"
  env = {**os.environ, "OUT": str(out), "GPU_CHECK_PRESET": "tiny", "GPU_CHECK_BUDGET_S": "2",
         "GPU_CHECK_SKIP_INSTALL": "1", "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=900)
  for step in ("throughput", "attention", "arrl", "trial_overhead"):
    assert f"{step} exit 0" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]

  throughput = json.loads((out / "throughput.json").read_text())
  assert [r["preset"] for r in throughput["results"]] == ["tiny"] and throughput["results"][0]["step_seconds"] > 0

  attention = json.loads((out / "attention.json").read_text())
  windows = attention["windows"]
  assert [w["window"] for w in windows] == [32, 64]  # tiny's "SL": a sliding and a full layer
  for w in windows:
    assert w["xla"]["fwd_bwd_median_s"] > 0
    assert "cuDNN" in w["cudnn"]["error"]  # reported, not fatal, off a GPU

  overhead = json.loads((out / "trial_overhead.json").read_text())
  [trial] = overhead["trials"]
  assert trial["status"] == "baseline" and trial["val_bpb"] > 0 and trial["num_steps"] >= 1
  assert trial["overhead_s"] > trial["compile_s"] > 0 and trial["training_s"] > 0
  assert overhead["outside_trials_s"] > 0 and overhead["wall_s"] > trial["total_s"]
  assert (out / "arrl" / "trials.jsonl").exists()
