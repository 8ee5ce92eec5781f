"""python -m arrl.report on recorded run directories (ledger fixtures, no training)."""
import os

import matplotlib.image
import pytest

from arrl import report
from arrl import tree as tree_lib
from arrl.ledger import Ledger
from arrl.nanochat_space import nanochat_space
from arrl.trial import Status, TrialRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def edited(tree, *changes):
  for path, value in changes:
    tree = tree_lib.set_path(tree, path, value)
  return tree


def write_run(run_dir, scores=None):
  """A recorded cpu-preset run of 10 trials: 2 baselines, 2 keeps, 4 discards (one cached), a crash, an abort.
  Every trial that ran took 60 s (30 training, 10 compile) and started 100 s after the previous one."""
  default = nanochat_space("cpu").default()
  lr = edited(default, ("optim.matrix_lr", 0.0566))
  best = edited(default, ("model.depth", 3), ("optim.matrix_lr", 0.0566))
  rows = [  # status, val_bpb, program, description
      ("baseline", 1.70, default, "baseline"), ("baseline", 1.71, default, "baseline"),
      ("discard", 1.72, edited(default, ("model.depth", 5)), "depth: 4 -> 5"),
      ("keep", 1.68, lr, "matrix_lr: 0.04 -> 0.0566"),
      ("crash", None, edited(lr, ("model.depth", 6)), "depth: 4 -> 6"),
      ("discard", 1.69, edited(lr, ("optim.weight_decay", 0.1)), "weight_decay: 0.2 -> 0.1"),
      ("keep", 1.66, best, "depth: 4 -> 3"),
      ("aborted", None, edited(best, ("optim.embedding_lr", 0.3)), "embedding_lr: 0.6 -> 0.3"),
      ("discard", 1.665, best, "cached"),
      ("discard", 1.75, edited(best, ("optim.weight_decay", 0.1)), "weight_decay: 0.2 -> 0.1"),
  ]
  ledger = Ledger(str(run_dir), durable=False)
  for i, (status, val, tree, desc) in enumerate(rows):
    cached = desc == "cached"
    start = 1000.0 + 100 * i
    if scores is not None and val is not None:
      val = scores[i]
    ledger.append(TrialRecord(
        trial_id=f"{i:06d}", status=Status(status), tree=tree, digest=tree_lib.digest(tree),
        run_status=Status.OK if val is not None else Status(status), score=val, kept=status == "keep",
        description=desc, cached=cached, started_at=start, finished_at=start + (0 if cached else 60),
        metrics={} if cached else {"training_seconds": 30.0, "compile_seconds": 10.0}))
  return str(run_dir)


@pytest.fixture()
def run_dir(tmp_path):
  return write_run(tmp_path / "demo")


def assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC
  h, w, _ = matplotlib.image.imread(path).shape
  assert h > 100 and w > 100


def test_report_of_one_run_writes_the_plot_and_the_numbers(run_dir, tmp_path, capsys):
  ledger_bytes = open(os.path.join(run_dir, "trials.jsonl"), "rb").read()
  out = tmp_path / "out"
  assert report.main([run_dir, "--out", str(out)]) == 0
  assert capsys.readouterr().out.split() == [str(out / "demo.md")]
  assert_png(out / "demo.png")
  md = (out / "demo.md").read_text()
  assert "10 trials (9 run, 1 cached)" in md
  assert "mean val_bpb 1.705000, sigma 0.007071" in md   # std of (1.70, 1.71), ddof=1
  for status, n in (("discard", 4), ("baseline", 2), ("keep", 2), ("crash", 1), ("aborted", 1)):
    assert f"| {status} | {n} |" in md
  assert "Trial 000006: val_bpb 1.660000, 0.045000 below the baseline mean (6.4 sigma)." in md
  best_section = md.split("## Best program")[1].split("## Top")[0]
  assert [line for line in best_section.splitlines() if line.startswith("- ")] == [
      "- `depth: 4 -> 3`", "- `matrix_lr: 0.04 -> 0.0566`"]
  top = [line.split(" | ")[1] for line in md.split("## Top 10")[1].split("## Time")[0].splitlines()
         if line.startswith("| ") and line[2].isdigit()]
  assert top == ["000006", "000003", "000005", "000000", "000001", "000002", "000009"]   # the cached 000008 is not
  assert "| 1 | 000006 | keep | 1.660000 | -0.045000 | depth: 4 -> 3 |" in md
  assert "From the first trial's start to the last one's end: 0.267 h." in md   # 960 s
  assert "| training | 0.075 | 28.1% |" in md                                   # 9 x 30 s of 960 s
  assert "| compile | 0.025 | 9.4% |" in md
  assert "| other trial time (start-up, data, evaluation, teardown) | 0.050 | 18.8% |" in md
  assert "| between trials (agent, ledger, pauses) | 0.117 | 43.8% |" in md
  assert "![val_bpb per trial](demo.png)" in md
  assert open(os.path.join(run_dir, "trials.jsonl"), "rb").read() == ledger_bytes


def test_a_running_run_with_a_half_written_line_is_read_without_touching_it(run_dir, tmp_path):
  path = os.path.join(run_dir, "trials.jsonl")
  with open(path, "ab") as f:
    f.write(b'{"trial_id": "000010", "sta')
  before = sorted(os.listdir(run_dir)), open(path, "rb").read()
  assert report.main([run_dir, "--out", str(tmp_path / "out")]) == 0
  assert "10 trials (9 run, 1 cached)" in (tmp_path / "out" / "demo.md").read_text()
  assert (sorted(os.listdir(run_dir)), open(path, "rb").read()) == before   # no repair, no new file


def test_several_runs_get_a_comparison_plot(run_dir, tmp_path, capsys):
  other = write_run(tmp_path / "other", scores=[1.70, 1.72, 1.71, 1.65, None, 1.66, 1.64, None, 1.66, 1.70])
  out = tmp_path / "cmp"
  assert report.main([run_dir, other, "--out", str(out)]) == 0
  assert capsys.readouterr().out.split() == [str(out / "demo.md"), str(out / "other.md"), str(out / "comparison.png")]
  for name in ("demo.png", "other.png", "comparison.png"):
    assert_png(out / name)
  assert "Trial 000006: val_bpb 1.640000" in (out / "other.md").read_text()


def test_running_best_is_the_baseline_mean_then_each_keep(run_dir):
  run = report.Run.load(run_dir)
  assert run.running_best(run.records).round(4).tolist() == [1.70, 1.705, 1.705, 1.68, 1.68, 1.68, 1.66, 1.66, 1.66,
                                                             1.66]


def test_export_best_writes_a_script_that_compiles(run_dir, tmp_path, capsys):
  script = tmp_path / "best.py"
  assert report.main([run_dir, "--out", str(tmp_path / "out"), "--export-best", str(script)]) == 0
  assert f"{script} (preset cpu)" in capsys.readouterr().out
  text = script.read_text()
  compile(text, str(script), "exec")
  assert "PRESET = 'cpu'" in text and "depth: 4 -> 3" in text and "matrix_lr: 0.04 -> 0.0566" in text


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no such run directory"),
    (lambda d: d.mkdir(), "no trials.jsonl"),
    (lambda d: (d.mkdir(), (d / "trials.jsonl").write_text("")), "no finished trial yet"),
])
def test_missing_or_empty_run_dir_is_one_clear_line(tmp_path, capsys, make, message):
  run_dir = tmp_path / "run"
  make(run_dir)
  assert report.main([str(run_dir), "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f"error: {run_dir}") and message in err[0]


def test_export_best_needs_one_run_dir(run_dir, capsys):
  with pytest.raises(SystemExit) as e:
    report.main([run_dir, run_dir, "--export-best", "x.py"])
  assert e.value.code == 2 and "--export-best needs exactly one RUN_DIR" in capsys.readouterr().err
