import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY_PRESET, TINY_PROGRAM
from nanochat_jax import train as train_lib

SUMMARY_KEYS = ["val_bpb", "training_seconds", "total_seconds", "compile_seconds", "peak_memory_mb", "mfu_percent",
                "total_tokens_M", "num_steps", "num_params_M", "depth", "env_digest"]


def test_budgeted_run_ends_within_tolerance_learns_and_summarises(tiny_data):
  budget = 4.0
  res = train_lib.train(TINY_PROGRAM, TINY_PRESET, tiny_data, budget_s=budget, log=lambda s: None)
  assert res.status == "ok"
  steps_dt = np.diff([0.0] + [t for t, _, _ in res.loss_curve])
  assert abs(res.training_seconds - budget) <= max(0.01 * budget, 2 * float(np.median(steps_dt)))
  assert res.num_steps == len(res.loss_curve) > 5
  first, last = res.loss_curve[0][2], np.mean([l for _, _, l in res.loss_curve[-3:]])
  assert first > math.log(TINY_PROGRAM.model.vocab_size) - 0.5 and last < first - 1.0  # learns visibly
  assert 0 < res.val_bpb < 10
  assert res.compile_seconds > 0 and res.total_seconds >= res.training_seconds + res.compile_seconds
  summary = res.summary().splitlines()
  assert summary[0] == "---"
  keys = [line.split(": ")[0] for line in summary[1:]]
  assert all(k in keys for k in SUMMARY_KEYS)


def test_same_seed_same_result(tiny_data):
  # Fixed step count via the abort callback so wall-clock jitter cannot change the number of steps.
  stop_at_3 = lambda info: info["step"] >= 3
  runs = [train_lib.train(TINY_PROGRAM, TINY_PRESET, tiny_data, budget_s=60, on_progress=stop_at_3,
                          log=lambda s: None) for _ in range(2)]
  # Same data and init; XLA's CPU reductions may differ in the last float bits between runs.
  np.testing.assert_allclose([l for _, _, l in runs[0].loss_curve], [l for _, _, l in runs[1].loss_curve], rtol=1e-5)
  assert runs[0].status == "aborted" and runs[0].num_steps == 3 and runs[0].val_bpb is None


def test_diverging_run_ends_with_diverged(tiny_data):
  # Finite but absurd: without the soft-cap, a 1e30 head learning rate blows the logits up at once.
  bad = dataclasses.replace(TINY_PROGRAM, model=dataclasses.replace(TINY_PROGRAM.model, softcap=0.0),
                            optim=dataclasses.replace(TINY_PROGRAM.optim, unembedding_lr=1e30))
  res = train_lib.train(bad, TINY_PRESET, tiny_data, budget_s=30, log=lambda s: None)
  assert res.status == "diverged"
  assert res.num_steps <= 3 and res.val_bpb is None


def test_compile_over_cap_is_compile_timeout(tiny_data):
  preset = dataclasses.replace(TINY_PRESET, compile_cap_s=1e-4)
  res = train_lib.train(TINY_PROGRAM, preset, tiny_data, budget_s=5, log=lambda s: None)
  assert res.status == "compile-timeout" and res.num_steps == 0


def test_bad_data_paths_and_empty_corpus_get_one_clear_line(tmp_path, capsys):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "a.txt").write_text("")
  (empty / "b.txt").write_text("")
  for data in [str(tmp_path / "missing"), str(tmp_path / "nothing-*.parquet"), str(empty)]:
    code = train_lib.main(["--preset", "cpu", "--data", data])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("error: "), err


def test_bad_program_file_is_one_clear_line(tmp_path, capsys):
  prog = tmp_path / "p.json"
  prog.write_text('{"model": {"depth": 4, "no_such_field": 1}}')
  assert train_lib.main(["--preset", "cpu", "--program", str(prog)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "no_such_field" in err[0]


def test_cli_end_to_end_on_the_embedded_corpus_prints_summary():
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-m", "nanochat_jax.train", "--preset", "tiny", "--budget-s", "2"],
                       capture_output=True, text=True, env=env, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = dict(l.split(": ", 1) for l in out.stdout.split("---\n")[-1].strip().splitlines())
  assert set(SUMMARY_KEYS) <= set(lines)
  assert float(lines["val_bpb"]) > 0 and lines["depth"] == "2" and int(lines["num_steps"]) > 0


def test_a_fixed_step_cost_makes_exactly_that_many_steps_with_a_score(tiny_data, monkeypatch):
  # benchmarks.seed_spread --steps N: the seed's share of the spread, with no step-count noise at all
  from benchmarks.seed_spread import fixed_step_cost

  monkeypatch.setattr(train_lib, "step_cost_s", fixed_step_cost(TINY_PRESET.budget_s, 7))
  res = train_lib.train(TINY_PROGRAM, TINY_PRESET, tiny_data, log=lambda s: None)
  assert res.status == "ok" and res.num_steps == 7 and res.val_bpb is not None
  assert res.training_seconds == pytest.approx(TINY_PRESET.budget_s)


def test_on_a_flops_clock_the_step_count_and_score_do_not_depend_on_the_machine(tiny_data, monkeypatch):
  from nanochat_jax import env
  preset = dataclasses.replace(TINY_PRESET, cpu_clock="flops")
  monkeypatch.setattr(train_lib, "compiled_flops", lambda compiled: 1e9)
  monkeypatch.setattr(env, "CPU_FLOPS_PER_S", 2.5e9)   # 0.4 budget-seconds a step: 5 steps in 2 s
  runs = []
  for jump in (1e-4, 100.0):   # a machine ~infinitely fast, then one where every step takes 100 s
    readings = iter(range(10**6))
    monkeypatch.setattr(train_lib, "budget_clock", lambda backend: (lambda: next(readings) * jump))
    runs.append(train_lib.train(TINY_PROGRAM, preset, tiny_data, seed=3, log=lambda s: None))
  assert [r.num_steps for r in runs] == [5, 5] and runs[0].val_bpb == runs[1].val_bpb
  assert runs[0].training_seconds == pytest.approx(2.0)


def test_data_seed_draws_the_data_order_and_seed_the_initialisation(tiny_data, monkeypatch):
  from benchmarks.seed_spread import fixed_step_cost
  orders = []
  batches = train_lib.loader.train_batches
  monkeypatch.setattr(train_lib.loader, "train_batches",
                      lambda docs, rows, seq_len, seed, **kw: orders.append(seed) or batches(docs, rows, seq_len, seed, **kw))

  monkeypatch.setattr(train_lib, "step_cost_s", fixed_step_cost(TINY_PRESET.budget_s, 3))

  def run(**seeds) -> float:
    return train_lib.train(TINY_PROGRAM, TINY_PRESET, tiny_data, log=lambda s: None, **seeds).val_bpb

  same = run(seed=1), run(seed=1, data_seed=1)
  other_data, other_init = run(seed=1, data_seed=0), run(seed=0, data_seed=1)
  assert orders == [1, 1, 0, 1]
  assert same[0] == same[1] and len({same[0], other_data, other_init}) == 3
  with pytest.raises(ValueError, match="seed must be"):
    run(seed=1, data_seed=-1)


def test_seed_spread_splits_seeds_and_applies_settings():
  from benchmarks.seed_spread import seeds_of, with_settings
  assert [seeds_of("both", 3), seeds_of("init", 3), seeds_of("data", 3)] == [(3, 3), (3, 0), (0, 3)]
  prog = with_settings(TINY_PROGRAM, ["schedule.device_batch_size=4", "model.window_pattern=L"])
  assert prog.schedule.device_batch_size == 4 and prog.model.window_pattern == "L"
  assert prog.model.depth == TINY_PROGRAM.model.depth
  for bad in ["schedule.nope=1", "schedule", "nope.depth=2"]:
    with pytest.raises(SystemExit, match="--set"):
      with_settings(TINY_PROGRAM, [bad])
  with pytest.raises(ValueError):
    with_settings(TINY_PROGRAM, ["schedule.device_batch_size=3"])  # 3 rows do not divide the step's tokens
