"""Ledger: durable appends, torn-tail repair, kill -9 safety, results.tsv format."""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from arrl.ledger import LEDGER_FILE, RESULTS_FILE, RESULTS_HEADER, Ledger, LedgerError
from arrl.trial import FIELDS, SCORED, Status, TrialRecord
from arrl.tree import Node

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = Node("params", "flat", {"x": 1})


def rec(tid: str, status: str = "discard", score: float | None = 0.99, digest: str | None = None,
        description: str | None = None, peak_memory_mb: float | None = 40_000.0, **metrics) -> TrialRecord:
  return TrialRecord(trial_id=tid, status=Status(status), tree=TREE, digest=digest or f"d{tid}",
                     run_status=Status.OK if status in SCORED else Status(status), score=score, kept=status == "keep",
                     description=f"trial {tid}" if description is None else description,
                     metrics={"peak_memory_mb": peak_memory_mb, **metrics})


def tsv_rows(run_dir) -> list[list[str]]:
  with open(os.path.join(run_dir, RESULTS_FILE)) as f:
    lines = f.read().splitlines()
  assert lines[0] == RESULTS_HEADER
  return [line.split("\t") for line in lines[1:]]


def test_append_and_reload(tmp_path):
  led = Ledger(str(tmp_path))
  assert len(led) == 0 and led.records() == []
  stored = led.append(rec("0001", "baseline", loss_curve=[[0.5, 3.0]]))
  led.append(rec("0002", "keep", digest="same"))
  led.append(rec("0003", "crash", digest="same", score=None, error="boom"))
  line = json.loads((tmp_path / LEDGER_FILE).read_text().splitlines()[0])
  assert list(line)[:len(FIELDS)] == list(FIELDS) and line["log_tail"] == "" and line["run_status"] == "ok"
  again = Ledger(str(tmp_path))
  assert len(again) == 3
  assert [r.trial_id for r in again.records()] == ["0001", "0002", "0003"]
  assert again.records()[0] == stored and again.records()[2].metrics == {"error": "boom", "peak_memory_mb": 40_000.0}
  assert [r.trial_id for r in again.find_digest("same")] == ["0002", "0003"]
  assert again.find_digest("nope") == []


def test_defaults_are_not_shared_between_lines():
  a, b = rec("a").to_dict(), rec("b").to_dict()
  a["loss_curve"].append([0.5, 3.0])
  assert b["loss_curve"] == [] and rec("c").to_dict()["loss_curve"] == []


def _line(**kw):
  return TrialRecord.from_dict({**rec("x").to_dict(), **kw}, "trials.jsonl: trial x")


@pytest.mark.parametrize("make,msg", [
    (lambda: TrialRecord.from_dict({"status": "keep", "kept": True}, "here"), "here: field 'trial_id' is missing"),
    (lambda: _line(run_status=None), "field 'run_status' must be str"),
    (lambda: rec("x y"), "whitespace"),
    (lambda: _line(status="weird"), "status 'weird' is not one of"),
    (lambda: rec("x", "ok"), "status must be one of"),   # a run not judged yet is not a ledger record
    (lambda: dataclasses.replace(rec("x", "keep"), kept=False), "contradicts"),
    (lambda: _line(kept="no"), "field 'kept' must be bool"),
    (lambda: _line(program="{}"), "trial x program: tree: expected an object with exactly the keys"),
    (lambda: rec("x", f=object()), "JSON"),
])
def test_bad_records_are_rejected(tmp_path, make, msg):
  led = Ledger(str(tmp_path))
  with pytest.raises(ValueError, match=msg):
    led.append(make())
  assert len(Ledger(str(tmp_path))) == 0


def test_a_line_read_and_written_again_is_byte_identical():
  # A ledger written before the typed record (tests/test_run_dir.py resumes it): every key, its order and
  # every number survive from_dict / to_dict unchanged.
  with open(os.path.join(ROOT, "tests", "data", "pre_trial_run", LEDGER_FILE)) as f:
    lines = f.read().splitlines()
  assert len(lines) == 5
  for i, line in enumerate(lines):
    again = TrialRecord.from_dict(json.loads(line), f"line {i + 1}").to_dict()
    assert json.dumps(again, ensure_ascii=True, separators=(",", ":")) == line


def test_duplicate_trial_id_is_rejected(tmp_path):
  led = Ledger(str(tmp_path))
  led.append(rec("0001"))
  with pytest.raises(ValueError, match="already in the ledger"):
    led.append(rec("0001"))
  assert len(Ledger(str(tmp_path))) == 1


def test_torn_tail_is_repaired(tmp_path):
  led = Ledger(str(tmp_path))
  led.append(rec("0001"))
  led.append(rec("0002"))
  path = tmp_path / LEDGER_FILE
  whole = json.dumps(rec("0003").to_dict()) + "\n"
  with open(path, "a") as f:
    f.write(whole[: len(whole) // 2])   # a crash in the middle of the third append
  led = Ledger(str(tmp_path))
  assert [r.trial_id for r in led.records()] == ["0001", "0002"]
  torn = glob.glob(str(path) + ".torn-*")
  assert len(torn) == 1 and open(torn[0]).read() == whole[: len(whole) // 2]
  led.append(rec("0003"))
  assert [r.trial_id for r in Ledger(str(tmp_path)).records()] == ["0001", "0002", "0003"]
  assert all(json.loads(line) for line in path.read_text().splitlines())


@pytest.mark.parametrize("tail", [b"\x00" * 300, b"\x00" * 300 + b"\n", json.dumps(rec("0002").to_dict()).encode()],
                         ids=["zeros", "zeros-newline", "complete-without-newline"])
def test_other_torn_tails_are_repaired(tmp_path, tail):
  Ledger(str(tmp_path)).append(rec("0001"))
  with open(tmp_path / LEDGER_FILE, "ab") as f:
    f.write(tail)
  led = Ledger(str(tmp_path))
  assert [r.trial_id for r in led.records()] == ["0001"]
  assert (tmp_path / LEDGER_FILE).read_bytes().endswith(b"}\n")


def test_corrupt_middle_line_is_an_error(tmp_path):
  led = Ledger(str(tmp_path))
  for tid in ("1", "2", "3"):
    led.append(rec(tid))
  path = tmp_path / LEDGER_FILE
  lines = path.read_text().splitlines()
  lines[1] = lines[1][:20]
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(LedgerError, match="line 2 is corrupt"):
    Ledger(str(tmp_path))


def test_duplicate_ids_on_disk_are_an_error(tmp_path):
  line = json.dumps(rec("1").to_dict()) + "\n"
  (tmp_path / LEDGER_FILE).write_text(line + line + json.dumps(rec("2").to_dict()) + "\n")
  with pytest.raises(LedgerError, match="repeats trial_id"):
    Ledger(str(tmp_path))


def test_unusable_run_dir_is_an_error(tmp_path):
  not_a_dir = tmp_path / "file"
  not_a_dir.write_text("x")
  with pytest.raises(LedgerError, match="not usable"):
    Ledger(str(not_a_dir))


def test_results_tsv_format(tmp_path):
  led = Ledger(str(tmp_path))
  led.append(rec("000000", "baseline", score=0.9979, peak_memory_mb=45_060.0, description="baseline"))
  led.append(rec("000001", "keep", score=0.99312345, peak_memory_mb=46_000.0,
                 description="model.depth: 8 -> 10\n\toptim.matrix_lr: 0.04 -> 0.05"))
  led.append(rec("000002", "discard", score=1.0, peak_memory_mb=None))
  led.append(rec("000003", "crash", score=float("nan"), peak_memory_mb=None, description="OOM"))
  led.append(rec("000004", "compile-timeout", score=None))
  assert tsv_rows(tmp_path) == [
      ["000000", "0.997900", "44.0", "keep", "baseline"],
      ["000001", "0.993123", "44.9", "keep", "model.depth: 8 -> 10 optim.matrix_lr: 0.04 -> 0.05"],
      ["000002", "1.000000", "0.0", "discard", "trial 000002"],
      ["000003", "0.000000", "0.0", "crash", "OOM"],
      ["000004", "0.000000", "39.1", "compile-timeout", "trial 000004"],
  ]


def test_results_tsv_is_rebuilt_on_open(tmp_path):
  led = Ledger(str(tmp_path))
  led.append(rec("1"))
  led.append(rec("2"))
  (tmp_path / RESULTS_FILE).write_text(RESULTS_HEADER + "\n")   # stale: as if killed before the rewrite
  Ledger(str(tmp_path))
  assert [row[0] for row in tsv_rows(tmp_path)] == ["1", "2"]


WRITER = textwrap.dedent("""
    import sys
    from arrl.ledger import Ledger
    from arrl.trial import Status, TrialRecord
    from arrl.tree import Node
    led = Ledger(sys.argv[1])
    i = len(led)
    while True:
      led.append(TrialRecord(trial_id=f"{i:06d}", status=Status.DISCARD, tree=Node("params", "flat"), digest="d",
                             run_status=Status.OK, score=1.0, metrics={"log_tail": "x" * 50000,
                             "loss_curve": [[j / 100, 3.0] for j in range(100)]}))
      i += 1
""")


def test_kill_9_during_appends_never_corrupts(tmp_path):
  run_dir = str(tmp_path / "run")
  counts = []
  ledger_path = os.path.join(run_dir, LEDGER_FILE)
  for round_ in range(6):
    size = os.path.getsize(ledger_path) if os.path.exists(ledger_path) else 0
    writer = subprocess.Popen([sys.executable, "-c", WRITER, run_dir], cwd=ROOT)
    end = time.monotonic() + 20
    while (not os.path.exists(ledger_path) or os.path.getsize(ledger_path) <= size) and time.monotonic() < end:
      time.sleep(0.005)
    time.sleep(0.013 * round_)   # kill at varying points of the write / fsync / tsv rewrite cycle
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    # results.tsv is always a complete file, at most one record behind the ledger.
    if os.path.exists(os.path.join(run_dir, RESULTS_FILE)):
      rows = tsv_rows(run_dir)
      assert all(len(r) == 5 for r in rows)
    led = Ledger(run_dir)
    ids = [r.trial_id for r in led.records()]
    assert ids == [f"{i:06d}" for i in range(len(ids))]   # contiguous: nothing lost, nothing twice
    assert [r[0] for r in tsv_rows(run_dir)] == ids
    counts.append(len(led))
  assert counts == sorted(counts) and counts[-1] > counts[0] > 0
