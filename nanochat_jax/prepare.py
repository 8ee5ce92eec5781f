"""Download climbmix parquet shards (autoresearch's data) for use as a user corpus.

  python -m nanochat_jax.prepare --num-shards 10 --out ~/data/climbmix

Fetches training shards 0..N-1 plus the pinned validation shard, which sorts last, so
`--data ~/data/climbmix` then validates on it. Existing shards are skipped: rerun to resume.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from nanochat_jax.corpus import atomic_open

BASE_URL = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
MAX_SHARD = 6542
VAL_SHARD = MAX_SHARD  # pinned validation shard, as in autoresearch


def shard_name(index: int) -> str:
  return f"shard_{index:05d}.parquet"


def download_shard(url: str, path: Path, timeout_s: float) -> int:
  """Fetch `url` into `path` atomically; returns the byte count."""
  with urllib.request.urlopen(url, timeout=timeout_s) as response, atomic_open(path) as f:
    shutil.copyfileobj(response, f, length=1 << 20)
    return f.tell()


def download_shards(num_shards: int, out: Path, base_url: str = BASE_URL, timeout_s: float = 60.0) -> list[Path]:
  """Training shards 0..num_shards-1 then the validation shard; raises OSError when a download fails."""
  indices = [*range(num_shards), VAL_SHARD]
  paths = []
  for k, index in enumerate(indices, 1):
    path = out / shard_name(index)
    paths.append(path)
    if path.exists():
      print(f"[{k}/{len(indices)}] {path.name} already present", flush=True)
      continue
    start = time.perf_counter()
    size = download_shard(f"{base_url.rstrip('/')}/{path.name}", path, timeout_s)
    print(f"[{k}/{len(indices)}] {path.name} {size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s", flush=True)
  return paths


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m nanochat_jax.prepare", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num-shards", type=int, required=True, help=f"training shards, 1..{MAX_SHARD}")
  parser.add_argument("--out", type=Path, required=True, help="directory for the parquet shards")
  parser.add_argument("--base-url", default=BASE_URL, help="where shard_NNNNN.parquet files are served")
  parser.add_argument("--timeout", type=float, default=60.0, help="seconds per network operation")
  args = parser.parse_args(argv)
  if not 1 <= args.num_shards <= MAX_SHARD:
    parser.error(f"--num-shards must be in 1..{MAX_SHARD}, got {args.num_shards}")
  try:
    download_shards(args.num_shards, args.out.expanduser(), args.base_url, args.timeout)
  except (urllib.error.URLError, OSError) as e:
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    print(f"error: download from {args.base_url} failed ({reason}); check the network or --base-url",
          file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
