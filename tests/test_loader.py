import itertools
import threading

import numpy as np
import pytest

from nanochat_jax.loader import Prefetcher, pack_rows, split_long_docs, spread_order, train_batches, val_batches

BOS = 0


def make_docs(lengths: list[int]) -> list[np.ndarray]:
  """Doc k = [BOS, 1000k+1, 1000k+2, ...]: every token says which document and position it came from."""
  return [np.array([BOS] + [1000 * k + j for j in range(1, n)], np.int32) for k, n in enumerate(lengths)]


def doc_of(token: int) -> int:
  return token // 1000


def segments(row: np.ndarray) -> list[np.ndarray]:
  starts = np.flatnonzero(row == BOS)
  return np.split(row, starts[1:])


def test_best_fit_hand_made_case():
  docs = make_docs([6, 3, 4, 2, 9, 8])
  rows = list(pack_rows(docs, row_len=10))
  # row 1: largest fitting is 9; 1 slot left, nothing fits -> crop the shortest (2) to 1 token.
  # row 2: of {6, 3, 4, 8} the 8; 2 left, nothing fits -> crop the shortest (3) to 2 tokens.
  # row 3: of {6, 4} the 6, then the 4 fills the row exactly.
  expected = [
      np.concatenate([docs[4], docs[3][:1]]),
      np.concatenate([docs[5], docs[1][:2]]),
      np.concatenate([docs[0], docs[2]]),
  ]
  assert len(rows) == 3
  for row, want in zip(rows, expected):
    np.testing.assert_array_equal(row, want)
    assert row.dtype == np.int32


def test_small_buffer_limits_the_choice():
  docs = make_docs([6, 3, 4])
  rows = list(pack_rows(docs, row_len=5, buffer_size=1))
  # The buffer holds one doc at a time: 6 is cropped to 5; 3 fits, then 4 is cropped to 2.
  np.testing.assert_array_equal(rows[0], docs[0][:5])
  np.testing.assert_array_equal(rows[1], np.concatenate([docs[1], docs[2][:2]]))
  assert len(rows) == 2


def reference_pack(docs: list[np.ndarray], row_len: int, buffer_size: int) -> list[np.ndarray]:
  """The packing rule, written as plainly as possible: linear scans over a FIFO list."""
  stream, buffer, rows = iter(docs), [], []
  while True:
    row: list[int] = []
    while len(row) < row_len:
      buffer.extend(itertools.islice(stream, buffer_size - len(buffer)))
      if not buffer:
        return rows
      space = row_len - len(row)
      fitting = [i for i, d in enumerate(buffer) if len(d) <= space]
      if fitting:
        row.extend(buffer.pop(max(fitting, key=lambda i: (len(buffer[i]), -i))))
      else:
        row.extend(buffer.pop(min(range(len(buffer)), key=lambda i: (len(buffer[i]), i)))[:space])
    rows.append(np.array(row))


@pytest.mark.parametrize("seed, buffer_size", [(0, 50), (1, 1000), (2, 3)])
def test_packing_matches_reference_and_invariants(seed, buffer_size):
  lengths = np.random.default_rng(seed).integers(2, 60, size=300).tolist()
  docs = make_docs(lengths)
  row_len = 33
  rows = list(pack_rows(docs, row_len, buffer_size))
  want = reference_pack(docs, row_len, buffer_size)
  assert len(rows) == len(want) > 0
  assert all(np.array_equal(r, w) for r, w in zip(rows, want))
  used = set()
  for row in rows:
    assert len(row) == row_len and row[0] == BOS  # exact length, no padding, BOS-aligned
    segs = segments(row)
    for seg in segs[:-1]:  # all but the last segment are whole documents
      k = doc_of(seg[1])
      np.testing.assert_array_equal(seg, docs[k])
      assert k not in used
      used.add(k)
    if len(segs[-1]) > 1:  # the last one is a document prefix (cropped or whole)
      k = doc_of(segs[-1][1])
      np.testing.assert_array_equal(segs[-1], docs[k][:len(segs[-1])])
      assert k not in used
      used.add(k)
  assert len(used) > 0.8 * len(docs)


def test_tokens_are_conserved_without_crops():
  docs = make_docs([5] * 12)  # 12 docs of 5 tokens fill 6 rows of 10 exactly
  rows = list(pack_rows(docs, row_len=10))
  assert len(rows) == 6
  assert sorted(np.concatenate(rows).tolist()) == sorted(np.concatenate(docs).tolist())


def test_split_long_docs():
  docs = make_docs([25, 4, 10])
  pieces = split_long_docs(docs, row_len=10)
  assert [len(p) for p in pieces] == [10, 10, 7, 4, 10]
  assert all(p[0] == BOS and len(p) <= 10 for p in pieces)
  first = pieces[:3]
  rebuilt = np.concatenate([first[0]] + [p[1:] for p in first[1:]])  # drop the repeated BOS
  np.testing.assert_array_equal(rebuilt, docs[0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(row_len=1), "row_len"), (dict(row_len=5, buffer_size=0), "buffer_size"),
])
def test_pack_rows_argument_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    pack_rows(make_docs([3]), **kwargs)


def test_empty_document_is_an_error():
  with pytest.raises(ValueError, match="non-empty"):
    list(pack_rows([np.zeros(0, np.int32)], row_len=4))


def test_train_batches_shape_and_determinism():
  docs = make_docs(np.random.default_rng(1).integers(2, 300, size=200).tolist())
  take = lambda seed: [b.copy() for b in itertools.islice(train_batches(docs, 4, 64, seed), 30)]
  a, b, c = take(0), take(0), take(1)
  for batch in a:
    assert batch.shape == (4, 65) and batch.dtype == np.int32 and (batch[:, 0] == BOS).all()
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_train_batches_reshuffle_every_epoch():
  docs = make_docs([9] * 20)  # each document fills a row of T+1 = 9 exactly: rows show the stream order
  batches = train_batches(docs, batch_rows=1, seq_len=8, seed=3, split_long=False)
  order = [doc_of(next(batches)[0, 1]) for _ in range(60)]
  epochs = [order[i:i + 20] for i in range(0, 60, 20)]
  assert all(sorted(e) == list(range(20)) for e in epochs)  # each epoch visits every document once
  assert epochs[0] != epochs[1] != epochs[2]


def test_spread_order_keeps_every_prefix_close_to_each_documents_share():
  sizes = [1, 2, 3, 5, 8, 13, 40, 100]
  doc = np.repeat(np.arange(len(sizes)), sizes)

  def worst_prefix_gap(order):  # max over prefixes k and documents d of |pieces of d in the prefix - k n_d / N|
    seen = np.cumsum(np.eye(len(sizes))[doc[order]], axis=0)
    return np.abs(seen - np.arange(1, len(doc) + 1)[:, None] * np.array(sizes) / len(doc)).max()

  for seed in range(20):
    order = spread_order(doc, np.random.default_rng(seed))
    assert sorted(order.tolist()) == list(range(len(doc)))            # a permutation: an epoch sees every piece
    assert worst_prefix_gap(order) < 2.5                               # plain permutations: 3.8-9.7 here
    inside = [i for i in order if doc[i] == 7]
    assert inside != sorted(inside)                                    # a document's pieces come in random order
  assert min(worst_prefix_gap(np.random.default_rng(s).permutation(len(doc))) for s in range(20)) > 2.5


def test_long_docs_are_split_not_discarded():
  docs = make_docs([1000, 1000])
  rows = [b[0] for b in itertools.islice(train_batches(docs, 1, 99, seed=0, buffer_size=4), 40)]
  used = {int(t) for r in rows for t in r if t != BOS}
  assert len(used) > 0.9 * 2 * 999  # without splitting only 2 rows' worth (~200 tokens) would ever appear
  cropped = [b[0] for b in itertools.islice(train_batches(docs, 1, 99, seed=0, split_long=False), 40)]
  assert len({int(t) for r in cropped for t in r}) <= 2 * 100


def test_val_batches_fixed_order_and_cycling():
  docs = make_docs([9] * 5)
  first = [b.copy() for b in itertools.islice(val_batches(docs, 2, 8), 10)]
  again = [b.copy() for b in itertools.islice(val_batches(docs, 2, 8), 10)]
  assert all(np.array_equal(x, y) for x, y in zip(first, again))
  order = [doc_of(r[1]) for b in first for r in b]
  assert order == [0, 1, 2, 3, 4] * 4  # fixed order, cycled past the end


@pytest.mark.parametrize("call, message", [
    (lambda d: train_batches(d, 0, 8, 0), "batch_rows"),
    (lambda d: train_batches(d, 2, 0, 0), "seq_len"),
    (lambda d: train_batches(d, 2, 8, -1), "seed"),
    (lambda d: train_batches([], 2, 8, 0), "empty"),
    (lambda d: val_batches([], 2, 8), "empty"),
])
def test_batch_argument_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call(make_docs([5]))


def test_prefetcher_order_and_put():
  with Prefetcher(iter(range(50)), depth=3, put=lambda x: x * 2) as p:
    assert list(p) == [2 * i for i in range(50)]
    with pytest.raises(StopIteration):
      next(p)


def test_prefetcher_reraises_worker_exception():
  def source():
    yield 1
    yield 2
    raise KeyError("bad shard")

  p = Prefetcher(source())
  assert next(p) == 1 and next(p) == 2
  with pytest.raises(KeyError, match="bad shard"):
    next(p)
  with pytest.raises(StopIteration):
    next(p)


def test_prefetcher_runs_ahead_and_close_stops_worker():
  produced = []

  def endless():
    for i in itertools.count():
      produced.append(i)
      yield i

  p = Prefetcher(endless(), depth=2)
  assert next(p) == 0
  threading.Event().wait(0.2)
  assert 2 <= len(produced) <= 5  # bounded: the queue depth plus the item in the worker's hand
  p.close()
  assert not p._thread.is_alive()
  with pytest.raises(StopIteration):
    next(p)


def test_prefetcher_depth_error():
  with pytest.raises(ValueError, match="depth"):
    Prefetcher(iter([]), depth=0)
