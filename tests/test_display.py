"""The run display: live panel on a terminal, periodic plain lines elsewhere, never an error for the loop."""
import io
import re
import types
import warnings

import pytest
from rich.console import Console

from arrl.abort import AbortPolicy
from arrl.display import RunDisplay
from arrl.nanochat_objective import NanochatEvaluator
from arrl.nanochat_space import nanochat_space
from arrl.runner import TrialResult
from arrl.tree import Node
from arrl.trial import EvalContext, Pending, Status, TrialRecord

TREE = Node("params", "flat")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ABORT_RECORD = {"fraction": 0.3, "stop": False, "predicted_val_bpb": 1.7312, "best_val_bpb": 1.7011}


class FakeWatcher:
  """A monitor that records what it saw and answers `stop` from the 50 % point on."""

  def __init__(self):
    self.record, self.seen = None, []

  def observe(self, event):
    self.seen.append(event)
    if event["progress"] >= 0.3:
      self.record = ABORT_RECORD
    return event["progress"] >= 0.5


def fake_loop(**kw):
  base = dict(best_score=1.7011, sigma=0.0021, executed=4, elapsed_s=7200.0, in_flight=[],
              pending=Pending(trial_id="000004", baseline=False, tree=TREE, description="matrix_lr: 0.04 -> 0.05"))
  return types.SimpleNamespace(**{**base, **kw})


def event(p, step):
  return {"type": "progress", "t": 30 * p, "progress": p, "loss": 6.5 - p, "step": step, "tok_s": 1020.0, "mfu": 3.14}


def record(trial_id="000004", status="discard", score=1.7105):
  return TrialRecord(trial_id=trial_id, status=Status(status), tree=TREE, digest="d", run_status=Status.OK, score=score,
                     description="mlp: relu2 -> [swiglu]")


def test_live_panel_on_a_terminal_shows_the_trial_in_flight():
  out = io.StringIO()
  display = RunDisplay(max_experiments=10, max_hours=None, console=Console(file=out, force_terminal=True, width=200))
  display.attach(fake_loop())
  inner = FakeWatcher()
  monitor = display.monitor("000004", inner)
  assert display._live is not None   # a terminal gets the live panel
  decisions = [monitor.observe(event(p, i + 1)) for i, p in enumerate((0.1, 0.3, 0.6))]
  assert decisions == [False, False, True] and len(inner.seen) == 3   # the watcher decides, unchanged
  assert monitor.record is ABORT_RECORD
  display._live.refresh()
  text = ANSI.sub("", out.getvalue())
  for shown in ("trial 000004", "matrix_lr: 0.04 -> 0.05", "step 3", "loss 5.9000", "1,020 tok/s", "MFU 3.1%",
                "0m12s left", "early abort at 30%: predicted val_bpb 1.7312 vs best 1.7011 -> continue",
                "best 1.701100", "sigma 0.0021", "2.0 trials/h", "ETA 3h00m"):
    assert shown in text, shown
  display.trial(display.loop, record())
  display.close()
  assert display._live is None
  text = ANSI.sub("", out.getvalue())
  assert re.search(r"trial 000004 +discard val_bpb 1\.710500 \| best 1\.701100 .*\| mlp: relu2 -> \[swiglu\]", text)


def test_live_panel_shows_every_trial_in_flight_with_parallel_workers():
  out = io.StringIO()
  display = RunDisplay(max_experiments=10, max_hours=None, console=Console(file=out, force_terminal=True, width=200))
  display.attach(fake_loop(pending=None, in_flight=[
      Pending(trial_id="000005", baseline=False, tree=TREE, description="depth: 4 -> 6"),
      Pending(trial_id="000006", baseline=False, tree=TREE, description="mlp: relu2 -> [gelu]")]))
  first, second = display.monitor("000005", FakeWatcher()), display.monitor("000006", FakeWatcher())
  first.observe(event(0.1, 1))
  second.observe(event(0.3, 7))
  text = ANSI.sub("", display.panel().plain)
  assert "trial 000005" in text and "depth: 4 -> 6" in text and "step 1 " in text
  assert "trial 000006" in text and "mlp: relu2 -> [gelu]" in text and "step 7 " in text
  display.trial(display.loop, record("000005"))
  text = display.panel().plain
  assert "trial 000005" not in text and "trial 000006" in text
  display.close()


def test_non_terminal_output_is_the_periodic_lines_and_the_trial_line_only():
  out = io.StringIO()
  display = RunDisplay(max_experiments=None, max_hours=None, console=Console(file=out, force_terminal=False, width=300))
  display.attach(fake_loop())
  monitor = display.monitor("000004", FakeWatcher())
  assert display._live is None
  for i in range(1, 41):   # 40 events over the budget: one line per 10 %
    monitor.observe(event(i / 40, i))
  display.trial(display.loop, record())
  display.close()
  lines = out.getvalue().splitlines()
  assert "\x1b" not in out.getvalue()
  assert len(lines) == 11
  assert [int(re.match(r"  trial 000004 +(\d+)% \| step", line).group(1)) for line in lines[:10]] == list(
      range(10, 101, 10))
  assert lines[0] == "  trial 000004  10% | step 4 | loss 6.4000 | 1,020 tok/s | MFU 3.1% | 0m27s left"
  assert lines[10].startswith("trial 000004") and "ETA until stopped" in lines[10]


def test_display_errors_are_reported_once_and_never_reach_the_loop():
  class Broken:
    executed, elapsed_s, sigma, pending, in_flight = 1, 10.0, 0.001, None, ()

    @property
    def best_score(self):
      raise RuntimeError("broken display state")

  out = io.StringIO()
  display = RunDisplay(None, None, console=Console(file=out, force_terminal=True, width=120))
  display.attach(Broken())
  with pytest.warns(UserWarning, match="arrl display: rendering failed .*broken display state"):
    monitor = display.monitor("000001", FakeWatcher())   # the live panel's first frame fails
  assert display.failed and display._live is None        # ... and the panel is gone
  assert monitor.observe(event(0.6, 5)) is True          # the watcher's decision still gets through
  with warnings.catch_warnings():
    warnings.simplefilter("error")    # a second warning would raise here
    display.trial(Broken(), record())
  display.close()


def test_evaluator_chains_the_display_on_the_abort_watcher(tmp_path):
  seen = {}

  class FakeExecutor:
    def run(self, job, monitor=None, cancel=None):
      for i in range(1, 5):
        monitor.observe(event(i / 4, i))
      seen["record"] = monitor.record
      return TrialResult(trial_id=job.trial_id, status="ok", val_bpb=1.5)

  out = io.StringIO()
  display = RunDisplay(None, None, console=Console(file=out, force_terminal=False, width=300))
  display.attach(fake_loop(pending=Pending(trial_id="000007", baseline=False, tree=TREE, description="depth: 2 -> 3")))
  space = nanochat_space("tiny")
  evaluator = NanochatEvaluator(executor=FakeExecutor(), preset="tiny", budget_s=30.0, compile_cap_s=10.0,
                                env_digest="x", run_dir=str(tmp_path), abort=AbortPolicy(), watch=display.monitor)
  res = evaluator.evaluate(space.default(), "000007", EvalContext(sigma=0.001))
  assert res.status == "ok" and res.score == 1.5
  assert seen["record"] is None   # the abort watcher's record (no reference: no assessment)
  flight = display.flights["000007"]
  assert flight["description"] == "depth: 2 -> 3" and flight["event"]["step"] == 4
  assert "trial 000007 100% | step 4" in out.getvalue()
