"""kill -9 at random moments, then resume: is a trial ever lost or duplicated?

    python -m benchmarks.kill9 --kills 100        # a few minutes on 2 busy cores

Runs tests/loop_driver.py (arrl.search on a slightly slow toy objective, durable run dir) once without
interruption as the reference. Then, on a second run dir, it starts the driver, waits until the driver holds
RUN_DIR/lock (its search has begun: a kill during interpreter start-up tests nothing), SIGKILLs it after a
further random delay and checks the ledger, `--kills` times; a last start finishes the run. After every kill the ledger must
be a prefix of the reference (same trials, same order, same results: nothing lost, nothing duplicated), and
the finished run must equal the reference. The notes the restarts print (stale lock taken over, torn line
repaired, state rebuilt) are counted. Results: benchmarks/results/kill9.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "loop_driver.py")
NOTES = {"stale_lock_taken_over": "taking over the stale lock", "torn_line_repaired": "ended in a torn line",
         "state_rebuilt": "rebuilding the search state"}


def start(run_dir: str, agent: str, trials: int, log: str) -> subprocess.Popen:
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")])}
  with open(log, "a") as err:
    return subprocess.Popen([sys.executable, DRIVER, run_dir, agent, str(trials)], env=env, stderr=err,
                            stdout=subprocess.DEVNULL)


def wait_for_lock(run_dir: str, pid: int, timeout_s: float = 120.0) -> None:
  path, deadline = os.path.join(run_dir, "lock"), time.time() + timeout_s
  while time.time() < deadline:
    try:
      with open(path) as f:
        if json.loads(f.read() or "{}").get("pid") == pid:
          return
    except (OSError, ValueError):
      pass
    time.sleep(0.005)
  raise SystemExit(f"the driver (pid {pid}) did not take {path} within {timeout_s:g} s")


def ledger(run_dir: str) -> list[tuple]:
  path = os.path.join(run_dir, "trials.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:   # a torn tail is only repaired by the next start: read complete lines
    lines = f.read().split("\n")[:-1]
  recs = [json.loads(line) for line in lines]
  return [(r["trial_id"], r["digest"], r["val_bpb"], r["status"], r["cached"]) for r in recs]


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--kills", type=int, default=100)
  p.add_argument("--trials", type=int, default=500, help="trials of the driven search")
  p.add_argument("--agent", default="evolution")
  p.add_argument("--max-delay-s", type=float, default=0.5,
                 help="kill uniform(0, this) seconds after the driver took the lock")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "kill9.json"))
  args = p.parse_args(argv)
  rng = random.Random(args.seed)
  t0 = time.time()
  with tempfile.TemporaryDirectory(prefix="arrl-kill9-") as tmp:
    ref, run, log = os.path.join(tmp, "ref"), os.path.join(tmp, "run"), os.path.join(tmp, "stderr.log")
    if start(ref, args.agent, args.trials, os.devnull).wait() != 0:
      raise SystemExit("the reference run failed")
    want = ledger(ref)
    exact = mid_run = lost = duplicated = 0
    for _ in range(args.kills):
      before = ledger(run)
      proc = start(run, args.agent, args.trials, log)
      wait_for_lock(run, proc.pid)
      time.sleep(rng.uniform(0.0, args.max_delay_s))
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      got = ledger(run)
      duplicated += len(got) - len({r[0] for r in got})
      lost += sum(r not in got for r in before)   # a finished trial that vanished
      exact += got == want[:len(got)]
      mid_run += 0 < len(got) < len(want)
    final_rc = start(run, args.agent, args.trials, log).wait()
    got = ledger(run)
    with open(log) as f:
      stderr = f.read()
  result = {
      "kills": args.kills, "trials": len(want), "agent": args.agent, "kills_landing_mid_run": mid_run,
      "resumes_exact_prefix": exact, "finished_trials_lost": lost, "duplicated_trials": duplicated,
      "final_exit_code": final_rc, "final_equals_uninterrupted": got == want,
      **{k: stderr.count(v) for k, v in NOTES.items()},
      "seconds": round(time.time() - t0, 1), "load_avg": os.getloadavg(),
  }
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result, indent=1))
  ok = exact == args.kills and not lost and not duplicated and final_rc == 0 and got == want
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
