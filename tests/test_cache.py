"""The on-disk caches follow --cache-dir / $ARRL_CACHE, and JAX's compilation cache is bounded."""
from __future__ import annotations

from pathlib import Path

import jax
import pytest

import arrl.nanochat_objective
from nanochat_jax import cache
from nanochat_jax import train as train_lib


class _Called(Exception):
  pass


def _record(calls: list):
  def enable(cache_dir=None):
    calls.append(cache_dir)
    raise _Called  # stop before anything compiles
  return enable


def test_enable_jax_cache_sets_a_bounded_cache_under_the_cache_dir(tmp_path, monkeypatch):
  monkeypatch.delenv(cache.MAX_SIZE_ENV, raising=False)
  old = jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size
  try:
    assert cache.enable_jax_cache(tmp_path) == tmp_path / "jax" and (tmp_path / "jax").is_dir()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
    assert jax.config.jax_compilation_cache_max_size == cache.JAX_CACHE_MAX_BYTES == 2 * 2**30
    monkeypatch.setenv(cache.MAX_SIZE_ENV, "12345")
    cache.enable_jax_cache(tmp_path)
    assert jax.config.jax_compilation_cache_max_size == 12345
  finally:
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_compilation_cache_max_size", old[1])


def test_default_cache_dir_follows_arrl_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("ARRL_CACHE", str(tmp_path))
  assert cache.jax_cache_dir() == tmp_path / "jax" and cache.jax_cache_dir("elsewhere") == Path("elsewhere/jax")


def test_train_cli_uses_cache_dir_for_compilation(tiny_corpus_dir, tiny_cache_dir, monkeypatch):
  calls: list = []
  monkeypatch.setattr(train_lib, "enable_jax_cache", _record(calls))
  with pytest.raises(_Called):
    train_lib.main(["--preset", "tiny", "--data", tiny_corpus_dir, "--cache-dir", tiny_cache_dir])
  assert calls == [tiny_cache_dir]


def test_trial_worker_uses_cache_dir_for_compilation(tiny_corpus_dir, tiny_cache_dir, monkeypatch):
  calls: list = []
  monkeypatch.setattr(cache, "enable_jax_cache", _record(calls))
  payload = {"preset": "tiny", "data": tiny_corpus_dir, "cache_dir": tiny_cache_dir, "budget_s": 1.0,
             "program": "{}"}
  with pytest.raises(_Called):
    arrl.nanochat_objective.run_trial(payload, ctx=None)
  assert calls == [tiny_cache_dir]


def test_entries_written_without_a_size_cap_are_stamped_so_eviction_works(tmp_path, monkeypatch):
  # An entry written by a process with no cap has no access stamp; JAX's eviction read every stamp and
  # failed on it ("Error writing persistent compilation cache entry ... -atime"), so the cap never held.
  from jax._src.lru_cache import LRUCache

  jax_dir = tmp_path / "jax"
  jax_dir.mkdir()
  (jax_dir / "old-cache").write_bytes(b"x" * 100)
  old = jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size
  monkeypatch.setenv(cache.MAX_SIZE_ENV, "150")
  try:
    cache.enable_jax_cache(tmp_path)
  finally:
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_compilation_cache_max_size", old[1])
  assert (jax_dir / "old-atime").read_bytes() == (0).to_bytes(8, "little")
  LRUCache(str(jax_dir), max_size=150).put("new", b"y" * 100)   # raised FileNotFoundError before
  assert not (jax_dir / "old-cache").exists() and (jax_dir / "new-cache").exists()
