"""Bad inputs: each is refused with one line `error: ...` naming the flag or file, exit code 2, before compiling.

Table-driven over `nanochat_jax.train`'s and `arrl.main`'s CLIs (run in-process through their `main`), the
program file's fields, the data files and the on-disk caches.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import arrl.main
from arrl.runner import TrialJob
from conftest import TINY_PRESET, TINY_PROGRAM
from nanochat_jax import train as train_lib
from nanochat_jax.config import Program
from nanochat_jax.data import load_run_data
from nanochat_jax.env import PRESETS


@pytest.fixture
def no_compile(monkeypatch):
  """Fails the test if anything reaches compilation."""
  def refuse(*args, **kwargs):
    raise AssertionError("reached compilation")
  monkeypatch.setattr(train_lib, "compile_with_cap", refuse)


@pytest.fixture(scope="module")
def tiny_args(tiny_corpus_dir, tiny_cache_dir) -> list[str]:
  load_run_data(PRESETS["tiny"], tiny_corpus_dir, None, tiny_cache_dir)  # warm: no progress lines on stderr
  return ["--preset", "tiny", "--data", tiny_corpus_dir, "--cache-dir", tiny_cache_dir]


def one_line_error(main, argv: list[str], capsys) -> str:
  try:
    code = main(argv)
  except SystemExit as e:  # argparse
    code = e.code
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, err)
  return err[0]


# arrl.main's parse_args, not its main: were a bad flag accepted, main would start a whole run.
@pytest.mark.parametrize("main", [train_lib.main, arrl.main.parse_args], ids=["train", "arrl"])
@pytest.mark.parametrize("argv,flag", [
    (["--budget-s", "inf"], "--budget-s"),
    (["--budget-s", "1e9"], "--budget-s"),
    (["--budget-s", "nan"], "--budget-s"),
    (["--budget-s", "0"], "--budget-s"),
    (["--budget-s", "soon"], "--budget-s"),
    (["--seed", "1e23"], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**32)], "--seed"),
])
def test_bad_flags(main, argv, flag, capsys, no_compile):
  assert flag in one_line_error(main, argv, capsys)


def _program_file(tmp_path: Path, text: str) -> str:
  path = tmp_path / "program.json"
  path.write_text(text)
  return str(path)


def _tiny_with(field: str, value) -> str:
  d = PRESETS["tiny"].program.to_dict()
  section, name = field.split(".")
  d[section][name] = value
  return json.dumps(d)  # NaN and Infinity as JSON's common extension, which json.loads reads back


BAD_PROGRAMS = [
    ("[1, 2]", "JSON object"),
    ("null", "JSON object"),
    ("{not json", "program.json"),
    ('{"model": []}', "'model'"),
    (_tiny_with("model.head_dim", 0), "model.head_dim"),
    (_tiny_with("model.head_dim", 33), "head_dim must be even"),
    (_tiny_with("model.depth", "2"), "model.depth"),
    (_tiny_with("model.depth", 2.0), "model.depth"),
    (_tiny_with("model.depth", True), "model.depth"),
    (_tiny_with("model.depth", 1000), "too large"),
    (_tiny_with("model.aspect_ratio", 4096), "too large"),
    (_tiny_with("model.vocab_size", 300), "model.vocab_size"),
    (_tiny_with("model.sequence_len", 32), "model.sequence_len"),
    (_tiny_with("model.mlp", "nope"), "model.mlp"),
    (_tiny_with("model.norm", "nope"), "model.norm"),
    (_tiny_with("model.norm", 3), "model.norm"),
    (_tiny_with("model.softcap", -1.0), "model.softcap"),
    (_tiny_with("model.rope_base", 0.0), "model.rope_base"),
    (_tiny_with("model.mlp_mult", math.inf), "model.mlp_mult"),
    (_tiny_with("optim.matrix_lr", math.nan), "optim.matrix_lr"),
    (_tiny_with("optim.embedding_lr", math.inf), "optim.embedding_lr"),
    (_tiny_with("optim.unembedding_lr", -0.1), "optim.unembedding_lr"),
    (_tiny_with("optim.adam_beta2", 1.0), "optim.adam_beta2"),
    (_tiny_with("optim.adam_eps", 0.0), "optim.adam_eps"),
    (_tiny_with("optim.muon_ns_steps", 6), "optim.muon_ns_steps"),
    (_tiny_with("schedule.total_batch_tokens", 0), "schedule.total_batch_tokens"),
    (_tiny_with("schedule.total_batch_tokens", 256), "total_batch_tokens=256"),
    (_tiny_with("schedule.device_batch_size", 0), "schedule.device_batch_size"),
    (_tiny_with("schedule.warmup_ratio", 2.0), "schedule.warmup_ratio"),
]


@pytest.mark.parametrize("text,needle", BAD_PROGRAMS, ids=[f"{i}-{n}" for i, (_, n) in enumerate(BAD_PROGRAMS)])
def test_bad_programs(text, needle, tiny_args, tmp_path, capsys, no_compile):
  path = _program_file(tmp_path, text)
  line = one_line_error(train_lib.main, [*tiny_args, "--program", path], capsys)
  assert path in line and needle in line, line


def _parquet(path: Path, column) -> None:
  pq.write_table(pa.table({"text": column}), path)


@pytest.mark.parametrize("make_bad,name", [
    (lambda p: p.write_bytes(b"\xff\xfe\x00binary" * 10), "a.txt"),
    (lambda p: p.write_bytes(b"PAR1 this is not parquet"), "a.parquet"),
    (lambda p: _parquet(p, [1, 2, 3]), "a.parquet"),
    (lambda p: p.write_text('{"text": 5}\n'), "a.jsonl"),
], ids=["binary-txt", "corrupt-parquet", "int-text-column", "jsonl-int"])
def test_bad_data_files(make_bad, name, tmp_path, capsys, no_compile):
  data = tmp_path / "data"
  data.mkdir()
  make_bad(data / name)
  (data / "z.txt").write_text("the validation document")
  line = one_line_error(train_lib.main, ["--preset", "tiny", "--data", str(data), "--cache-dir", str(tmp_path)],
                        capsys)
  assert str(data / name) in line, line


def test_api_refuses_bad_budget_and_seed_before_compiling(tiny_data, no_compile):
  for kw in ({"budget_s": math.nan}, {"budget_s": math.inf}, {"budget_s": 0.0}, {"seed": -1}, {"seed": 1e23}):
    with pytest.raises(ValueError, match="budget|seed"):
      train_lib.train(TINY_PROGRAM, TINY_PRESET, tiny_data, log=lambda s: None, **{"budget_s": 5.0, **kw})


@pytest.mark.parametrize("field", ["budget_s", "compile_cap_s", "eval_allowance_s"])
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_trial_deadline_is_finite(field, value):
  with pytest.raises(ValueError, match="finite"):
    TrialJob(trial_id="t", fn="m:f", **{field: value})


def test_program_json_keeps_types():
  # From JSON, 4 and 4.0 differ: an int field refuses a float and a float field takes an int.
  d = TINY_PROGRAM.to_dict()
  d["model"]["softcap"] = 15
  Program.from_dict(d).validate()
  d["model"]["depth"] = 2.0
  with pytest.raises(ValueError, match="model.depth must be int"):
    Program.from_dict(d).validate()


@pytest.mark.parametrize("cache,corrupt", [
    ("tokenizer", lambda p: p.write_text("{ truncated")),
    ("tokens", lambda p: p.write_bytes(p.read_bytes()[:100])),
    ("tokens", lambda p: np.savez(p, tokens=np.arange(5, dtype=np.uint16), offsets=np.array([0, 2, 5]))),
], ids=["tokenizer-json", "tokens-truncated", "tokens-wrong-shape"])
def test_corrupt_cache_is_rebuilt_with_one_warning(cache, corrupt, tiny_corpus_dir, tmp_path, capsys):
  before = load_run_data(TINY_PRESET, tiny_corpus_dir, None, str(tmp_path))
  capsys.readouterr()
  victim = sorted((tmp_path / cache).iterdir())[0]
  corrupt(victim)
  after = load_run_data(TINY_PRESET, tiny_corpus_dir, None, str(tmp_path))
  warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
  assert len(warnings) == 1 and str(victim) in warnings[0], warnings
  assert after.tokenizer_digest == before.tokenizer_digest
  docs = zip(after.train_docs + after.val_docs, before.train_docs + before.val_docs)
  assert all(np.array_equal(a, b) for a, b in docs)
  load_run_data(TINY_PRESET, tiny_corpus_dir, None, str(tmp_path))
  assert "warning" not in capsys.readouterr().err  # the rebuilt file is intact
