"""Search tasks to meta-train on: a procedural prior of synthetic spaces and NAS-Bench-Graph tables.

A task is a space, an objective (params -> score to minimise; an exception = an infeasible program) and what
only training may read: the noise-free score, the optimum and the scale that turn a selection into a
normalised regret. cora, citeseer and pubmed are held out for evaluation and never become tasks here.
"""
from __future__ import annotations

import dataclasses
import string
from typing import Any, Callable

import numpy as np

from arrl.space import Space

HELD_OUT = ("cora", "citeseer", "pubmed")          # NAS-Bench-Graph datasets reserved for evaluation
NAS_TRAIN = ("cs", "physics", "photo", "computers", "arxiv", "proteins")


class Infeasible(Exception):
  """The program lies in an infeasible region (the loop records it as a crash)."""


@dataclasses.dataclass
class Task:
  name: str
  space: Space
  objective: Callable[[dict], float]      # observed score, noise included; raises Infeasible
  true: Callable[[dict], float]           # noise-free score (inf when infeasible): training-time only
  optimum: float
  scale: float                            # median score - optimum: a random program's regret is ~1
  size: int | None = None                 # number of programs, when small enough to be exhausted
  recipe: tuple | None = None             # how to build it again in another process (`task_from`)

  def regret(self, params: dict) -> float:
    """Normalised regret of a selection, in [0, 2] (0: the optimum; ~1: a typical random program)."""
    return float(min(2.0, max(0.0, (self.true(params) - self.optimum) / self.scale)))


def check_dataset(name: str) -> None:
  if name in HELD_OUT:
    raise ValueError(f"{name!r} is held out for evaluation (arrl.ppo.tasks.HELD_OUT); meta-training may not use it")
  if name not in NAS_TRAIN:
    raise ValueError(f"unknown training dataset {name!r}; choose from: {', '.join(NAS_TRAIN)}")


def _word(rng: np.random.Generator, taken: set[str]) -> str:
  while True:
    w = "".join(rng.choice(list(string.ascii_lowercase), size=int(rng.integers(3, 9))))
    if w not in taken:
      taken.add(w)
      return w


@dataclasses.dataclass
class _Field:
  name: str
  values: list[Any]
  ordinal: bool
  effect: np.ndarray                      # [n] additive effect of each value


def synthetic(rng: np.random.Generator, name: str = "synthetic") -> Task:
  """A random space of 3-12 fields with 2-12 values, categorical or ordinal; score = weighted additive effects
  (smooth along ordinal ladders) + pairwise interactions + per-program observation noise of random scale;
  random infeasible regions (pairs of settings) that never contain the default program."""
  recipe = ("synthetic", name, rng.bit_generator.state)  # the RNG's state before the draw rebuilds the same task
  taken: set[str] = set()
  fields = []
  for _ in range(int(rng.integers(3, 13))):
    n = int(rng.integers(2, 13))
    weight = float(np.exp(rng.normal(0, 1)))
    if rng.random() < 0.5:  # an ordinal ladder (a learning rate, a width): a smooth bowl or slope plus wiggles
      base, ratio = 10 ** rng.uniform(-4, 3), rng.choice([1.5, 2.0, 10 ** 0.5, 10.0])
      values = [float(f"{base * ratio ** k:.4g}") for k in range(n)]
      if rng.random() < 0.5:
        values = [int(round(v)) + k for k, v in enumerate(values)] if base >= 1 else values
      x = np.linspace(0, 1, n)
      effect = rng.normal(0, 3) * (x - rng.uniform(-0.2, 1.2)) ** 2 + 0.2 * rng.normal(size=n)
      fields.append(_Field(_word(rng, taken), values, True, weight * effect))
    else:
      words: set[str] = set()
      fields.append(_Field(_word(rng, taken), [_word(rng, words) for _ in range(n)], False,
                           weight * rng.normal(size=n)))
  F = len(fields)
  default = [int(rng.integers(len(f.values))) for f in fields]  # the starting program: a random point
  pairs = [tuple(sorted(rng.choice(F, 2, replace=False))) for _ in range(int(rng.integers(0, F + 1)))] if F > 1 else []
  inter = {p: rng.normal(0, float(np.exp(rng.normal(-0.5, 0.7))), (len(fields[p[0]].values), len(fields[p[1]].values)))
           for p in pairs}
  index = [{v: k for k, v in enumerate(f.values)} for f in fields]
  holes = []
  for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.5 else 0):
    i, j = rng.choice(F, 2, replace=False)
    a = {int(x) for x in rng.choice(len(fields[i].values), max(1, len(fields[i].values) // 3), replace=False)}
    b = {int(x) for x in rng.choice(len(fields[j].values), max(1, len(fields[j].values) // 3), replace=False)}
    a.discard(default[i])
    holes.append((int(i), int(j), a, b))
  noise = 0.0 if rng.random() < 0.4 else float(rng.uniform(0.01, 0.3))
  seed = int(rng.integers(2 ** 31))

  def idx(params: dict) -> list[int]:
    return [index[i][params[f.name]] for i, f in enumerate(fields)]

  def value(ix: list[int]) -> float:
    v = sum(f.effect[k] for f, k in zip(fields, ix))
    return float(v + sum(m[ix[p[0]], ix[p[1]]] for p, m in inter.items()))

  def feasible(ix: list[int]) -> bool:
    return not any(ix[i] in a and ix[j] in b for i, j, a, b in holes)

  # scale and optimum: a sample of the space, refined by coordinate descent from its best points
  sample = [list(rng.integers([len(f.values) for f in fields])) for _ in range(512)]
  scores = [value(ix) for ix in sample if feasible(ix)]
  starts = sorted((ix for ix in sample if feasible(ix)), key=value)[:8]
  optimum = min(scores)
  for ix in starts:
    best, improved = value(ix), True
    while improved:
      improved = False
      for i, f in enumerate(fields):
        for k in range(len(f.values)):
          cand = ix[:i] + [k] + ix[i + 1:]
          if feasible(cand) and value(cand) < best - 1e-12:
            ix, best, improved = cand, value(cand), True
    optimum = min(optimum, best)
  scale = float(np.median(scores) - optimum) or 1.0

  def true(params: dict) -> float:
    ix = idx(params)
    return value(ix) if feasible(ix) else float("inf")

  def objective(params: dict) -> float:
    ix = idx(params)
    if not feasible(ix):
      raise Infeasible(f"{params} is in an infeasible region")
    eps = np.random.default_rng([seed, *ix]).standard_normal() if noise else 0.0  # fixed per program
    return value(ix) + noise * scale * float(eps)

  spec = {f.name: {"choices": f.values, "ordinal": f.ordinal, "default": f.values[d]} for f, d in zip(fields, default)}
  size = int(np.prod([len(f.values) for f in fields]))
  return Task(name, Space.from_dict(spec), objective, true, optimum, scale, size, recipe)


def nas_task(dataset: str) -> Task:
  """A NAS-Bench-Graph table (validation accuracy, maximised) as a task; held-out datasets are refused."""
  check_dataset(dataset)
  try:
    from benchmarks.nasbench_graph import NasBenchGraph
  except ImportError as e:
    raise ImportError("NAS-Bench-Graph tasks need the repository's `benchmarks` package (run from the repository "
                      "root) and `pip install nas-bench-graph==1.4.0`") from e
  bench = NasBenchGraph(dataset)
  valid = np.array([r.valid for r in bench.table.values()])
  return Task(f"nas:{dataset}", bench.space, bench.objective, bench.objective, -bench.best_valid,
              float(bench.best_valid - np.median(valid)), recipe=("nas", dataset))


def rng_from_state(state: dict) -> np.random.Generator:
  """A generator in `state` (a `bit_generator.state`): it draws what the one the state was read from drew next."""
  rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
  rng.bit_generator.state = state
  return rng


def task_from(recipe: tuple) -> Task:
  """The task a `Task.recipe` describes, built again (a task's objective is a closure: it cannot be pickled, its
  recipe can): the same synthetic task from its RNG state, the same NAS table."""
  if recipe[0] == "synthetic":
    return synthetic(rng_from_state(recipe[2]), recipe[1])
  if recipe[0] == "nas":
    return nas_task(recipe[1])
  raise ValueError(f"unknown task recipe {recipe[0]!r}")
