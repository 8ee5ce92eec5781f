"""Where the on-disk caches live: tokenizer, token arrays and JAX's persistent compilation cache.

All of them sit under one directory: `--cache-dir`, else $ARRL_CACHE, else ~/.cache/arrl. The compilation
cache (`<dir>/jax`) is bounded: JAX evicts the least recently used entries once it holds more than
JAX_CACHE_MAX_BYTES (2 GiB; the environment variable JAX_COMPILATION_CACHE_MAX_SIZE, in bytes, overrides it).
Standard library only: the trial runner imports this module before any worker starts.
"""
from __future__ import annotations

import os
from pathlib import Path

JAX_CACHE_MAX_BYTES = 2 * 2**30
MAX_SIZE_ENV = "JAX_COMPILATION_CACHE_MAX_SIZE"
_ENTRY, _ATIME = "-cache", "-atime"   # JAX's file names: an entry and its last-access stamp


def _adopt_unstamped(path: Path) -> None:
  """Gives every entry without an access stamp the oldest one.

  A process that used this directory without a size cap (plain JAX, an older arrl) writes entries without
  stamps; JAX's eviction reads every entry's stamp and fails on the first one missing, so every later
  write would warn and the cache would grow past its cap.
  """
  try:
    names = set(os.listdir(path))
  except OSError:
    return
  for name in names:
    if name.endswith(_ENTRY) and name[:-len(_ENTRY)] + _ATIME not in names:
      try:
        (path / (name[:-len(_ENTRY)] + _ATIME)).write_bytes((0).to_bytes(8, "little"))
      except OSError:
        pass   # a read-only cache: JAX will say so itself


def default_cache_dir() -> Path:
  return Path(os.environ.get("ARRL_CACHE") or Path.home() / ".cache" / "arrl")


def jax_cache_dir(cache_dir: str | Path | None = None) -> Path:
  return Path(cache_dir or default_cache_dir()) / "jax"


def enable_jax_cache(cache_dir: str | Path | None = None) -> Path:
  """Points this process's JAX at the bounded compilation cache under `cache_dir`; call before compiling."""
  import jax  # deferred: this module stays importable without jax

  path = jax_cache_dir(cache_dir)
  path.mkdir(parents=True, exist_ok=True)
  _adopt_unstamped(path)
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_compilation_cache_max_size", int(os.environ.get(MAX_SIZE_ENV) or JAX_CACHE_MAX_BYTES))
  return path
