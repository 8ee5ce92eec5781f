"""Runs arrl.search on a deterministic, slightly slow objective; killed and resumed by test_loop.py."""
import sys
import time

import arrl.search

SPACE = {f"x{i}": {"choices": list(range(5)), "default": 0} for i in range(4)}


def objective(p: dict) -> float:
  time.sleep(0.03)
  return float(sum((v - i) ** 2 for i, v in enumerate(p.values())))


def slow_objective(p: dict) -> float:
  time.sleep(0.2)   # long enough for a kill to land with both workers busy
  return objective(p)


if __name__ == "__main__":
  run_dir, agent, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
  workers = int(sys.argv[4]) if len(sys.argv) > 4 else 1
  # Confirmation runs on: every improvement of this objective clears the keep margin and is confirmed.
  arrl.search.search(SPACE, objective if workers == 1 else slow_objective, agent=agent, max_trials=n, seed=3,
                     run_dir=run_dir, noise_repeats=2, confirm=1, workers=workers)
