"""Append-only, crash-safe record of every finished trial.

Store: `trials.jsonl` in the run directory, one JSON object per line. Why JSONL rather than SQLite:
records are written once and never updated, the loop is the only writer, the file is greppable and
diffable by a human at 3 a.m., and crash safety needs only two facts:
  - each record is written with a single `write()` on an O_APPEND descriptor and then fsync'd, so a
    finished `append` survives kill -9 and power loss;
  - a crash can at worst leave a torn (partial or garbage) *last* line. Opening the ledger detects it,
    saves the bytes to `trials.jsonl.torn-<unix time>-<pid>`, truncates the file back to the last complete
    record and says so on stderr. The trial id in the torn text (if readable) stays reserved
    (`reserved_ids`), so the loop never gives it to another trial. A bad line anywhere else is real
    corruption and raises `LedgerError` (nothing is guessed).

`results.tsv` mirrors the ledger in autoresearch's format. It is derived data: it is rewritten whole
(temp file + fsync + rename) after every append and again on open, so after kill -9 it is always a
complete file, at most one record behind, and exact again on the next open.

Single writer: the process using a run directory holds RUN_DIR/lock (arrl.lock), so a second one is refused.
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import sys
import time

from arrl.trial import LEDGER_STATUSES, SCORED, Status, TrialRecord

LEDGER_FILE = "trials.jsonl"
RESULTS_FILE = "results.tsv"
RESULTS_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription"

_TORN_ID = re.compile(rb'"trial_id"\s*:\s*"([^"\\]{1,64})"')


class LedgerError(RuntimeError):
  """The run directory cannot be used: unreadable, or the ledger is corrupt beyond its last line."""


def _fsync_dir(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _tsv_row(rec: TrialRecord) -> str:
  val = rec.score
  scored = rec.status in SCORED and val is not None and math.isfinite(val)
  mem_gb = (rec.metrics.get("peak_memory_mb") or 0.0) / 1024
  desc = " ".join(rec.description.split())   # one line, no tabs
  # autoresearch records its baseline as a kept run.
  tsv_status = Status.KEEP if rec.status == Status.BASELINE else rec.status
  return f"{rec.trial_id}\t{val if scored else 0.0:.6f}\t{mem_gb:.1f}\t{tsv_status}\t{desc}"


def parse_ledger(data: bytes, path: str) -> tuple[list[dict], int]:
  """The records of a ledger file's bytes and the offset just past the last good line (a torn last line is
  left out). LedgerError names `path` for a bad line anywhere else."""
  lines = data.split(b"\n")
  complete = lines[:-1]       # lines[-1] is b"" when the file ends with a newline, else a torn tail
  records: list[dict] = []
  seen: set[str] = set()
  good_end = 0                # byte offset just past the last good line
  for i, line in enumerate(complete):
    try:
      rec = json.loads(line)
      if not isinstance(rec, dict) or "trial_id" not in rec or "status" not in rec:
        raise ValueError("not a trial record")
    except ValueError as e:
      if i == len(complete) - 1 and not lines[-1]:   # garbage in the last line: a torn append
        break
      raise LedgerError(f"{path}: line {i + 1} is corrupt ({e}); only a torn last line is "
                        "repaired automatically — fix or remove that line by hand") from e
    if rec["trial_id"] in seen:
      raise LedgerError(f"{path}: line {i + 1} repeats trial_id {rec['trial_id']!r} (corrupt)")
    seen.add(rec["trial_id"])
    records.append(rec)
    good_end += len(line) + 1
  return records, good_end


def read_records(run_dir: str) -> list[dict]:
  """The records of RUN_DIR/trials.jsonl without writing anything (safe on a run in progress: a torn or
  half-written last line is left out, not repaired). LedgerError if it is missing or unreadable."""
  path = os.path.join(os.fspath(run_dir), LEDGER_FILE)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise LedgerError(f"cannot read {path}: {e.strerror or e}") from e
  return parse_ledger(data, path)[0]


class Ledger:
  """The trials of one run directory, loaded on open (repairing a torn tail), appended durably."""

  def __init__(self, run_dir: str, durable: bool = True):
    """durable=False skips fsync: for throw-away runs (e.g. arrl.search without a run_dir)."""
    self.run_dir = os.fspath(run_dir)
    self.durable = durable
    self.path = os.path.join(self.run_dir, LEDGER_FILE)
    self.results_path = os.path.join(self.run_dir, RESULTS_FILE)
    try:
      os.makedirs(self.run_dir, exist_ok=True)
      self._records = self._load()
      self._write_results()
    except OSError as e:
      raise LedgerError(f"run directory {self.run_dir!r} is not usable: {e}") from e
    self._ids = {r.trial_id for r in self._records}

  def _load(self) -> list[TrialRecord]:
    if not os.path.exists(self.path):
      return []
    with open(self.path, "rb") as f:
      data = f.read()
    lines, good_end = parse_ledger(data, self.path)
    if good_end < len(data):
      self._repair(data, good_end)
    try:
      return [TrialRecord.from_dict(d, f"{self.path}: trial {d['trial_id']}") for d in lines]
    except ValueError as e:
      raise LedgerError(str(e)) from None

  def _repair(self, data: bytes, good_end: int) -> None:
    torn = f"{self.path}.torn-{int(time.time())}-{os.getpid()}"
    with open(torn, "wb") as f:
      f.write(data[good_end:])
      f.flush()
      os.fsync(f.fileno())
    with open(self.path, "r+b") as f:
      f.truncate(good_end)
      f.flush()
      os.fsync(f.fileno())
    ids = _TORN_ID.findall(data[good_end:])
    lost = f"trial {ids[0].decode(errors='replace')} is lost and its id is not reused" if ids else "no trial id in it"
    print(f"note: {self.path} ended in a torn line (an interrupted write); moved it to {torn} ({lost})",
          file=sys.stderr)

  def reserved_ids(self) -> set[str]:
    """Trial ids found in torn tails moved aside (now or on an earlier open): never to be given out again."""
    out: set[str] = set()
    for torn in glob.glob(glob.escape(self.path) + ".torn-*"):
      with open(torn, "rb") as f:
        out.update(m.decode(errors="replace") for m in _TORN_ID.findall(f.read()))
    return out

  def _write_results(self) -> None:
    tmp = f"{self.results_path}.{os.getpid()}.tmp"   # per process: a second writer never shares a temp file
    with open(tmp, "w") as f:
      f.write("\n".join([RESULTS_HEADER] + [_tsv_row(r) for r in self._records]) + "\n")
      if self.durable:
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, self.results_path)
    if self.durable:
      _fsync_dir(self.run_dir)

  def append(self, rec: TrialRecord) -> TrialRecord:
    """Write a decided record durably; returns it. ValueError on one that cannot be stored."""
    if rec.status not in LEDGER_STATUSES:
      raise ValueError(f"status must be one of {', '.join(LEDGER_STATUSES)}; got {str(rec.status)!r}")
    if rec.trial_id in self._ids:
      raise ValueError(f"trial_id {rec.trial_id!r} is already in the ledger (trials are recorded once)")
    try:
      line = (json.dumps(rec.to_dict(), ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    except (TypeError, ValueError) as e:
      raise ValueError(f"ledger record {rec.trial_id!r} is not JSON-serialisable: {e}") from e
    new_file = not os.path.exists(self.path)
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      view = memoryview(line)
      while view:
        view = view[os.write(fd, view):]
      if self.durable:
        os.fsync(fd)
    finally:
      os.close(fd)
    if new_file and self.durable:
      _fsync_dir(self.run_dir)
    self._records.append(rec)
    self._ids.add(rec.trial_id)
    self._write_results()
    return rec

  def records(self) -> list[TrialRecord]:
    """All records in append order."""
    return list(self._records)

  def find_digest(self, digest: str) -> list[TrialRecord]:
    return [r for r in self._records if r.digest == digest]

  def __len__(self) -> int:
    return len(self._records)
