import re

import numpy as np
import pytest

from nanochat_jax import tokenizer as tok_mod
from nanochat_jax.corpus import Corpus, corpus_digest
from nanochat_jax.tokenizer import (SPECIAL_TOKENS, SPLIT_PATTERN, VOCAB_SIZE, Tokenizer, get_tokenizer,
                                    tokenize_corpus, tokenize_docs, train_tokenizer)

VOCAB = 300
SAMPLES = [
    "The quick brown fox jumps over the lazy dog in 2024, at 12:30.",
    "Prices rose 1234567 percent; don't panic, we'll see.\r\nNew line\n\n\tTabbed",
    "Ünïcödé: naïve café, 日本語のテキスト, emoji 😀🎉, Ελληνικά, مرحبا",
    "A literal <|reserved_0|> in text stays text.",
    "   leading and trailing spaces   ",
    "",
]


def make_corpus(train: list[str], val: list[str]) -> Corpus:
  return Corpus("synthetic", tuple(train), tuple(val), corpus_digest(train, val))


@pytest.fixture(scope="module")
def corpus() -> Corpus:
  rng = np.random.default_rng(0)
  words = ["state", "union", "congress", "the", "nation", "people", "year", "war", "peace", "dollars"]
  train = [" ".join(rng.choice(words, 200)) + f" in {1790 + i} spent {rng.integers(10**6)} dollars." for i in range(40)]
  numbers = "1234567 2024 31415926 " * 1000  # frequent digit runs: without the 2-digit cap they would merge
  return make_corpus(train + SAMPLES[:3] + [numbers], ["the union in 1999."])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tok(corpus, cache) -> Tokenizer:
  return get_tokenizer(corpus, vocab_size=VOCAB, cache_dir=cache)


def test_constants():
  assert VOCAB_SIZE == 8192 and SPECIAL_TOKENS == tuple(f"<|reserved_{i}|>" for i in range(4))
  assert r"\p{N}{1,2}" in SPLIT_PATTERN


def test_vocab_specials_and_bos(tok):
  assert tok.vocab_size == VOCAB
  assert tok.bos_id == 0
  assert tok.decode([0, 1, 2, 3]) == "".join(SPECIAL_TOKENS)


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_is_exact(tok, text):
  ids = tok.encode(text)
  assert tok.decode(ids) == text
  assert all(i >= len(SPECIAL_TOKENS) for i in ids)  # literal special strings are never encoded as specials


def test_round_trip_arbitrary_unicode(tok):
  rng = np.random.default_rng(1)
  for _ in range(20):
    codepoints = rng.integers(1, 0x2FFFF, size=50)
    text = "".join(chr(c) for c in codepoints if not 0xD800 <= c < 0xE000)  # no lone surrogates
    assert tok.decode(tok.encode(text)) == text


def test_encode_batch_matches_encode(tok):
  assert tok.encode_batch(SAMPLES) == [tok.encode(t) for t in SAMPLES]


def test_token_bytes(tok):
  tb = tok.token_bytes()
  assert tb.dtype == np.int32 and tb.shape == (VOCAB,)
  assert (tb[:4] == 0).all() and (tb[4:] >= 1).all()
  for text in SAMPLES:
    assert tb[tok.encode(text)].sum() == len(text.encode("utf-8"))


def test_digits_split_in_at_most_pairs(tok):
  text = "1234567 and 89 in 2024: 3141592653589793"
  ids = tok.encode(text)
  assert tok.decode(ids) == text
  pieces = [tok.decode([i]) for i in ids]
  assert max(len(re.findall(r"\d", p)) for p in pieces) <= 2
  assert any(len(re.findall(r"\d", p)) == 2 for p in pieces)  # pairs were learnt, so the cap is what binds


def test_cache_hit_does_not_retrain(corpus, cache, tok, monkeypatch):
  files = list((cache / "tokenizer").iterdir())
  assert len(files) == 1
  mtime = files[0].stat().st_mtime_ns
  monkeypatch.setattr(tok_mod, "train_tokenizer", lambda *a, **k: pytest.fail("retrained despite cache"))
  again = get_tokenizer(corpus, vocab_size=VOCAB, cache_dir=cache)
  assert again.digest == tok.digest and files[0].stat().st_mtime_ns == mtime


def test_cache_is_keyed_by_settings_and_corpus(corpus, tmp_path, capsys):
  a = get_tokenizer(corpus, vocab_size=280, cache_dir=tmp_path)
  assert "training tokenizer" in capsys.readouterr().err
  b = get_tokenizer(make_corpus(list(corpus.train_docs[1:]), list(corpus.val_docs)), vocab_size=280,
                    cache_dir=tmp_path)
  assert a.vocab_size == 280 and a.digest != b.digest
  assert len(list((tmp_path / "tokenizer").iterdir())) == 2


def test_training_is_deterministic_and_serialization_stable(corpus, tok):
  again = train_tokenizer(corpus.train_docs, VOCAB)
  assert again.digest == tok.digest
  assert Tokenizer.from_str(tok.to_str()).digest == tok.digest


def test_vocab_too_small_is_an_error():
  with pytest.raises(ValueError, match="vocab_size must exceed 260"):
    train_tokenizer(["abc"], 260)


def test_tokenize_docs_prepends_bos_and_caches(tok, tmp_path, monkeypatch):
  docs = SAMPLES[:3]
  arrays = tokenize_docs(tok, docs, cache_dir=tmp_path, key="k1")
  assert [a.dtype for a in arrays] == [np.uint16] * 3
  assert [a.tolist() for a in arrays] == [[tok.bos_id] + tok.encode(d) for d in docs]
  monkeypatch.setattr(Tokenizer, "encode_batch", lambda *a: pytest.fail("re-encoded despite cache"))
  cached = tokenize_docs(tok, docs, cache_dir=tmp_path, key="k1")
  assert [a.tolist() for a in cached] == [a.tolist() for a in arrays]
  monkeypatch.undo()
  assert tokenize_docs(tok, [], cache_dir=tmp_path, key="empty") == []
  assert len(list((tmp_path / "tokens").iterdir())) == 2


def test_tokenize_docs_without_key_hashes_content(tok, tmp_path):
  a = tokenize_docs(tok, ["one doc"], cache_dir=tmp_path)
  b = tokenize_docs(tok, ["another doc"], cache_dir=tmp_path)
  assert a[0].tolist() != b[0].tolist()
  assert len(list((tmp_path / "tokens").iterdir())) == 2


def test_tokenize_corpus_splits(tok, corpus, tmp_path):
  train, val = tokenize_corpus(tok, corpus, cache_dir=tmp_path)
  assert len(train) == len(corpus.train_docs) and len(val) == 1
  assert tok.decode(val[0][1:].tolist()) == corpus.val_docs[0] and val[0][0] == tok.bos_id
