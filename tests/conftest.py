"""Shared fixtures: a tiny corpus, preset and program so training tests run in seconds on CPU."""
from __future__ import annotations

import dataclasses
import random

import pytest

from nanochat_jax.config import ModelConfig, OptimConfig, Program, ScheduleConfig
from nanochat_jax.data import load_run_data
from nanochat_jax.env import PRESETS

WORDS = ("the nation union congress people states government war peace law year great public country "
         "money trade army navy treaty citizens duty liberty justice commerce revenue report").split()


def write_tiny_corpus(root, n_docs: int = 40, seed: int = 0) -> str:
  """n_docs .txt files of pseudo-English; the last one (sorted) is the validation shard."""
  rng = random.Random(seed)
  root.mkdir(parents=True, exist_ok=True)
  for i in range(n_docs):
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "."
                 for _ in range(rng.randint(20, 60))]
    (root / f"doc{i:03d}.txt").write_text(" ".join(sentences) + f" In {1800 + i} we spent {rng.randint(1, 999)}.")
  return str(root)


TINY_PROGRAM = Program(
    model=ModelConfig(vocab_size=512, sequence_len=64, depth=2, aspect_ratio=32, head_dim=32,
                      window_pattern="SL"),
    optim=OptimConfig(),
    schedule=ScheduleConfig(total_batch_tokens=2 * 8 * 64, device_batch_size=8),
)
TINY_PRESET = dataclasses.replace(PRESETS["cpu"], name="tiny", seq_len=64, budget_s=2.0, eval_tokens=4 * 64 * 8,
                                  eval_batch_rows=8, compile_cap_s=120.0, program=TINY_PROGRAM,
                                  cpu_clock="cpu-time")  # seconds of CPU, as the real tiny preset


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory) -> str:
  return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tiny_cache_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def tiny_data(tiny_corpus_dir, tiny_cache_dir):
  return load_run_data(TINY_PRESET, tiny_corpus_dir, None, tiny_cache_dir)


@pytest.fixture
def fresh_registries():
  """Variants and knobs registered by a test are forgotten after it (the registries are process-wide)."""
  from arrl.nanochat_space import scoped_registries
  with scoped_registries():
    yield
