"""Byte-level BPE tokenizer (HF `tokenizers`) trained on a corpus's training split, with on-disk caches.

Vocabulary = 4 special tokens (ids 0..3, BOS = `<|reserved_0|>`) + 256 byte tokens + merges, GPT-4-style
pre-split with at most two digits per chunk (autoresearch's pattern). Decoding is byte-exact.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from nanochat_jax.cache import default_cache_dir
from nanochat_jax.corpus import Corpus, atomic_open, corpus_digest

SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|"""
                 r"""\s*[\r\n]|\s+(?!\S)|\s+""")
VOCAB_SIZE = 8192  # including the special tokens
SPECIAL_TOKENS = tuple(f"<|reserved_{i}|>" for i in range(4))
_TOKENS_FORMAT = "bos-led-v1"  # part of the token-cache key: bump when the stored layout changes
_ENCODE_CHUNK = 1024  # documents per Rust batch call: bounds the memory of live Encoding objects


def _sha256(text: str) -> str:
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Tokenizer:
  """A trained byte-level BPE; wraps a `tokenizers.Tokenizer`."""

  def __init__(self, hf: tokenizers.Tokenizer):
    # Literal "<|reserved_0|>" in a document is ordinary text, never an injected BOS.
    hf.encode_special_tokens = True
    self._hf = hf
    self._specials = [hf.token_to_id(t) for t in SPECIAL_TOKENS]
    if None in self._specials:
      raise ValueError(f"tokenizer lacks the special tokens {SPECIAL_TOKENS}")
    self.bos_id: int = self._specials[0]
    self.vocab_size: int = hf.get_vocab_size()
    self.digest: str = _sha256(hf.to_str())

  @classmethod
  def from_str(cls, serialized: str) -> "Tokenizer":
    return cls(tokenizers.Tokenizer.from_str(serialized))

  def to_str(self) -> str:
    return self._hf.to_str()

  def encode(self, text: str) -> list[int]:
    return self._hf.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self._hf.encode_batch_fast(list(texts), add_special_tokens=False)]

  def decode(self, ids: Sequence[int]) -> str:
    return self._hf.decode(list(ids), skip_special_tokens=False)

  def token_bytes(self) -> np.ndarray:
    """int32[vocab_size]: UTF-8 bytes each token stands for (0 for specials), for bits-per-byte."""
    # Byte-level BPE spells every byte as one character, so a token's string length is its byte count.
    lengths = np.array([len(self._hf.id_to_token(i)) for i in range(self.vocab_size)], dtype=np.int32)
    lengths[self._specials] = 0
    return lengths


def _untrained(vocab_size: int) -> tuple[tokenizers.Tokenizer, trainers.BpeTrainer]:
  hf = tokenizers.Tokenizer(models.BPE())
  hf.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(tokenizers.Regex(SPLIT_PATTERN), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
  ])
  hf.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # all 256 bytes, seen or not: any text encodes
  return hf, trainer


def train_tokenizer(docs: Sequence[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
  """Train a BPE on `docs`. The vocabulary can come out smaller than asked when merges run out."""
  min_size = len(SPECIAL_TOKENS) + 256
  if vocab_size <= min_size:
    raise ValueError(f"vocab_size must exceed {min_size} (specials + 256 bytes), got {vocab_size}")
  hf, trainer = _untrained(vocab_size)
  hf.train_from_iterator(docs, trainer, length=len(docs))
  return Tokenizer(hf)


def get_tokenizer(corpus: Corpus, vocab_size: int = VOCAB_SIZE, cache_dir: Path | str | None = None) -> Tokenizer:
  """The tokenizer trained on `corpus.train_docs`, from the disk cache when present."""
  settings = json.dumps({"corpus": corpus.digest, "pattern": SPLIT_PATTERN, "vocab_size": vocab_size,
                         "special_tokens": SPECIAL_TOKENS}, sort_keys=True)
  path = Path(cache_dir or default_cache_dir()) / "tokenizer" / f"{_sha256(settings)[:32]}.json"
  if path.exists():
    try:
      return Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except Exception as e:  # the tokenizers library raises bare Exception for a malformed file
      _rebuilding(path, e)
  mb = sum(len(d) for d in corpus.train_docs) / 1e6
  print(f"training tokenizer (vocab {vocab_size}) on {len(corpus.train_docs)} docs, {mb:.1f} MB of "
        f"{corpus.name}...", end="", file=sys.stderr, flush=True)
  start = time.perf_counter()
  tok = train_tokenizer(corpus.train_docs, vocab_size)
  print(f" done in {time.perf_counter() - start:.1f} s (vocab {tok.vocab_size})", file=sys.stderr)
  with atomic_open(path) as f:
    f.write(tok.to_str().encode("utf-8"))
  return tok


def tokenize_docs(tokenizer: Tokenizer, docs: Sequence[str], cache_dir: Path | str | None = None,
                  key: str | None = None) -> list[np.ndarray]:
  """Each document as `[BOS] + encode(doc)` (uint16 when the vocab fits, else uint32), cached on disk.

  The cache entry is keyed by the tokenizer digest and `key` (e.g. "<corpus digest>:train"); without a key
  the documents' content is hashed instead.
  """
  ident = key if key is not None else corpus_digest(docs, ())
  name = _sha256(_TOKENS_FORMAT + tokenizer.digest + ident)[:32]
  path = Path(cache_dir or default_cache_dir()) / "tokens" / f"{name}.npz"
  cached = _load_tokens(path, len(docs), tokenizer.vocab_size) if path.exists() else None
  if cached is None:
    flat, offsets = _encode_flat(tokenizer, docs)
    with atomic_open(path) as f:
      np.savez(f, tokens=flat, offsets=offsets)
  else:
    flat, offsets = cached
  return [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]  # views into one buffer: no copies


def _rebuilding(path: Path, why: BaseException | str) -> None:
  print(f"warning: cache file {path} is corrupt ({str(why)[:200]}); rebuilding it", file=sys.stderr)


def _load_tokens(path: Path, n_docs: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray] | None:
  """A token cache entry's (flat, offsets) if it is intact and fits `n_docs` documents, else None (warned)."""
  try:
    with np.load(path) as f:
      flat, offsets = f["tokens"], f["offsets"]
  except Exception as e:  # a damaged npz surfaces as zipfile, pickle, OSError, KeyError or ValueError errors
    _rebuilding(path, e)
    return None
  if (flat.ndim != 1 or offsets.shape != (n_docs + 1,) or offsets[0] != 0 or offsets[-1] != len(flat)
      or np.any(np.diff(offsets) < 1) or (len(flat) and int(flat.max()) >= vocab_size)):
    _rebuilding(path, "its arrays do not fit the documents or the vocabulary")
    return None
  return flat, offsets


def _encode_flat(tokenizer: Tokenizer, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """All documents concatenated (each led by BOS) plus int64[len(docs)+1] start offsets."""
  dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
  start = time.perf_counter()
  parts: list[np.ndarray] = []
  for i in range(0, len(docs), _ENCODE_CHUNK):
    for ids in tokenizer.encode_batch(docs[i:i + _ENCODE_CHUNK]):
      parts.append(np.array([tokenizer.bos_id, *ids], dtype=dtype))
    print(f"\rencoding documents: {min(i + _ENCODE_CHUNK, len(docs))}/{len(docs)}", end="", file=sys.stderr)
  print(f" in {time.perf_counter() - start:.1f} s", file=sys.stderr)
  offsets = np.cumsum([0] + [len(p) for p in parts], dtype=np.int64)
  flat = np.concatenate(parts) if parts else np.zeros(0, dtype)
  return flat, offsets


def tokenize_corpus(tokenizer: Tokenizer, corpus: Corpus,
                    cache_dir: Path | str | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """(train, val) token arrays of `corpus`, each document led by BOS."""
  train = tokenize_docs(tokenizer, corpus.train_docs, cache_dir, key=f"{corpus.digest}:train")
  val = tokenize_docs(tokenizer, corpus.val_docs, cache_dir, key=f"{corpus.digest}:val")
  return train, val
