"""BOS-aligned best-fit packing of tokenized documents into fixed-length rows, and a host prefetcher.

Input documents are token arrays that already start with BOS (`tokenizer.tokenize_docs` makes them so).
Each row holds exactly T+1 tokens with no padding: repeatedly the largest buffered document that fits the
remaining space goes in; when none fits, the shortest one is cropped to fill the row (its remainder is
dropped). Every row therefore starts with BOS, i.e. at a document start.
"""
from __future__ import annotations

import bisect
import itertools
import queue
import threading
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


class _DocBuffer:
  """Documents kept sorted by (length, arrival): best-fit and shortest lookups by bisection."""

  def __init__(self):
    self._keys: list[tuple[int, int]] = []
    self._docs: dict[int, np.ndarray] = {}
    self._arrivals = itertools.count()

  def __len__(self) -> int:
    return len(self._keys)

  def add(self, doc: np.ndarray) -> None:
    if doc.ndim != 1 or len(doc) == 0:
      raise ValueError(f"documents must be non-empty 1-D token arrays starting with BOS, got shape {doc.shape}")
    key = (len(doc), next(self._arrivals))
    bisect.insort(self._keys, key)
    self._docs[key[1]] = doc

  def _pop(self, i: int) -> np.ndarray:
    return self._docs.pop(self._keys.pop(i)[1])

  def pop_largest_fitting(self, space: int) -> np.ndarray | None:
    """The longest document of length <= space (the earliest-arrived among equals), or None."""
    i = bisect.bisect_right(self._keys, (space, float("inf")))
    if i == 0:
      return None
    return self._pop(bisect.bisect_left(self._keys, (self._keys[i - 1][0], -1)))

  def pop_shortest(self) -> np.ndarray:
    return self._pop(0)


def pack_rows(docs: Iterable[np.ndarray], row_len: int, buffer_size: int = 1000) -> Iterator[np.ndarray]:
  """Best-fit pack BOS-led documents into int32 rows of exactly `row_len` (= T+1) tokens.

  The buffer is refilled to `buffer_size` before every pick. Ends when `docs` is exhausted and the buffer
  cannot complete another row; that last partial row is dropped rather than padded.
  """
  if row_len < 2:
    raise ValueError(f"row_len must be >= 2 (T+1 with T >= 1), got {row_len}")
  if buffer_size < 1:
    raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
  return _pack(iter(docs), row_len, buffer_size)


def _pack(docs: Iterator[np.ndarray], row_len: int, buffer_size: int) -> Iterator[np.ndarray]:
  buffer = _DocBuffer()
  while True:
    row = np.empty(row_len, np.int32)
    pos = 0
    while pos < row_len:
      while len(buffer) < buffer_size and (doc := next(docs, None)) is not None:
        buffer.add(np.asarray(doc))
      if not buffer:
        return
      space = row_len - pos
      doc = buffer.pop_largest_fitting(space)
      if doc is None:
        doc = buffer.pop_shortest()[:space]
      row[pos:pos + len(doc)] = doc
      pos += len(doc)
    yield row


def split_long_docs(docs: Iterable[np.ndarray], row_len: int) -> list[np.ndarray]:
  """Cut documents longer than a row into row-sized pieces, each led by the document's BOS.

  Without this, packing keeps only the first row of every long document (sotu speeches average ~10k tokens,
  so a 2049-token row would use ~20% of the corpus and only ever show speech openings).
  """
  pieces: list[np.ndarray] = []
  for doc in docs:
    doc = np.asarray(doc)
    pieces.append(doc[:row_len])
    bos = doc[:1]
    for start in range(row_len, len(doc), row_len - 1):
      pieces.append(np.concatenate([bos, doc[start:start + row_len - 1]]))
  return pieces


def _check_batch_args(doc_tokens: Sequence[np.ndarray], batch_rows: int, seq_len: int) -> None:
  if batch_rows < 1 or seq_len < 1:
    raise ValueError(f"batch_rows and seq_len must be >= 1, got {batch_rows} and {seq_len}")
  if len(doc_tokens) == 0:
    raise ValueError("doc_tokens is empty: need at least one tokenized document")


def _batches(rows: Iterator[np.ndarray], batch_rows: int) -> Iterator[np.ndarray]:
  while True:
    yield np.stack([next(rows) for _ in range(batch_rows)])


def _pieces(doc_tokens: Sequence[np.ndarray], row_len: int, split_long: bool) -> list[np.ndarray]:
  return split_long_docs(doc_tokens, row_len) if split_long else list(doc_tokens)


def spread_order(doc_of_piece: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A random permutation of pieces that spreads each document's pieces evenly over it (stratified shuffling).

  Piece j of document d (j: a random rank among d's n_d pieces) sorts by (j + u_d) / n_d, u_d ~ U(0, 1): every
  piece still lands anywhere with equal chance, but any prefix of the order holds each document's share of its
  pieces to within about one piece, where a plain permutation lets it vary by ~sqrt(share). A short run sees a
  prefix, and which documents it holds was most of the seed's spread of val_bpb on the cpu preset (sd 0.0062 of
  0.0075 from the data order): the cpu preset's sd went 0.0064 (41 seeds, plain) -> 0.0044 (24 seeds, spread),
  same mean (benchmarks/results/cpu_clock/README.md).
  """
  doc_of_piece = np.asarray(doc_of_piece)
  n = len(doc_of_piece)
  if n == 0:
    return np.zeros(0, np.int64)
  counts = np.bincount(doc_of_piece)
  by_doc = np.lexsort((rng.random(n), doc_of_piece))   # grouped by document, random order inside each
  first = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.empty(n)
  rank[by_doc] = np.arange(n) - first[doc_of_piece[by_doc]]
  offset = rng.random(len(counts))
  return np.argsort((rank + offset[doc_of_piece]) / counts[doc_of_piece], kind="stable")


def train_batches(doc_tokens: Sequence[np.ndarray], batch_rows: int, seq_len: int, seed: int,
                  buffer_size: int = 1000, split_long: bool = True) -> Iterator[np.ndarray]:
  """Endless int32 (batch_rows, seq_len+1) batches; pieces reshuffled each epoch by `spread_order`.

  Epoch e's order comes from `np.random.default_rng((seed, e))`, so the stream is a function of the seed.
  """
  _check_batch_args(doc_tokens, batch_rows, seq_len)
  if seed < 0:
    raise ValueError(f"seed must be >= 0, got {seed}")
  per_doc = [_pieces([doc], seq_len + 1, split_long) for doc in doc_tokens]
  pieces = [p for ps in per_doc for p in ps]
  doc_of_piece = np.repeat(np.arange(len(per_doc)), [len(ps) for ps in per_doc])

  def epochs() -> Iterator[np.ndarray]:
    for epoch in itertools.count():
      for i in spread_order(doc_of_piece, np.random.default_rng((seed, epoch))):
        yield pieces[i]

  return _batches(pack_rows(epochs(), seq_len + 1, buffer_size), batch_rows)


def val_batches(doc_tokens: Sequence[np.ndarray], batch_rows: int, seq_len: int, buffer_size: int = 1000,
                split_long: bool = True) -> Iterator[np.ndarray]:
  """Endless int32 (batch_rows, seq_len+1) batches in a fixed order, cycling through the documents."""
  _check_batch_args(doc_tokens, batch_rows, seq_len)
  pieces = _pieces(doc_tokens, seq_len + 1, split_long)
  return _batches(pack_rows(itertools.cycle(pieces), seq_len + 1, buffer_size), batch_rows)


_ITEM, _END, _ERROR = range(3)


class Prefetcher(Generic[T]):
  """Pulls from `iterator` on a daemon thread into a bounded queue, so the accelerator never waits on the host.

  `put` (e.g. `jax.device_put`) runs on the worker thread too. A worker exception is re-raised by the
  consumer's next `next()`. Use as an iterator; `close()` (or leaving a `with` block) stops the worker.
  """

  def __init__(self, iterator: Iterable[Any], depth: int = 2, put: Callable[[Any], T] | None = None):
    if depth < 1:
      raise ValueError(f"depth must be >= 1, got {depth}")
    self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._done = False
    self._thread = threading.Thread(target=self._work, args=(iter(iterator), put), daemon=True, name="prefetcher")
    self._thread.start()

  def _work(self, source: Iterator[Any], put: Callable[[Any], T] | None) -> None:
    try:
      for item in source:
        if not self._offer((_ITEM, put(item) if put else item)):
          return
      self._offer((_END, None))
    except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
      self._offer((_ERROR, e))

  def _offer(self, message: tuple[int, Any]) -> bool:
    while not self._stop.is_set():  # poll so close() can always stop a worker blocked on a full queue
      try:
        self._queue.put(message, timeout=0.05)
        return True
      except queue.Full:
        pass
    return False

  def __iter__(self) -> "Prefetcher[T]":
    return self

  def __next__(self) -> T:
    if self._done:
      raise StopIteration
    kind, value = self._queue.get()
    if kind == _ITEM:
      return value
    self._done = True
    if kind == _ERROR:
      raise value
    raise StopIteration

  def close(self) -> None:
    self._done = True
    self._stop.set()
    self._thread.join(timeout=5.0)

  def __enter__(self) -> "Prefetcher[T]":
    return self

  def __exit__(self, *exc: object) -> None:
    self.close()
