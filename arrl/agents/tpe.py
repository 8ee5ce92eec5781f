"""TPE baseline: Optuna's Tree-structured Parzen Estimator (Bergstra et al. 2011) over the program's fields.

Every free slot of the grammar is one categorical parameter (a value's index on its grid): a module's
variant, each Choice field of the chosen variants (define-by-run, so the space is conditional), and for a
list field its length and then each element. Slots with a single legal value are not asked. The drawn
parameters become a tree with `space.from_params`; one that breaks a constraint is closed as FAIL and asked
again (at most `max_asks` times), after which the agent falls back to `space.sample`. The sampler is
multivariate TPE (one joint density over all parameters; optuna 5's default) unless `multivariate=False`.

Bookkeeping. Each asked trial is closed at once (FAIL, which TPE ignores); `observe` then adds the program
that actually ran as a completed trial with its score. So the study's completed trials are exactly the
observed history, whatever produced the program (TPE, the fallback sample or the loop's cache). A trial
without a score (crash, divergence, timeout) is told the worst score seen so far, so TPE learns to avoid
that region; before any score exists it is not told at all. Each ask uses a sampler seeded by
(seed, number of asks), so the next proposal is a function of (seed, asks, history) alone: `state_dict`
holds exactly those, and `load_state_dict` replays the history into a fresh study.

Parallel workers: programs still in flight (`state.in_flight`) join a copy of the study as RUNNING trials and
the sampler runs with Optuna's constant liar, which scores them as bad, so concurrent proposals spread out.
With `constant_liar=False` TPE ignores them and `propose_batch` re-asks a proposal that is in flight.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from arrl.agents.base import Outcome, Proposal, SearchState
from arrl.grammar import Child, Choice, Grammar, same
from arrl.space import Space
from arrl.tree import Node, Value, get_path, join_path

# choose(name, options, current) -> the chosen option; `current` reads the tree's value when encoding one.
Choose = Callable[[str, Sequence[Value], Callable[[], Value]], Value]


def walk(grammar: Grammar, kind: str, path: str, choose: Choose, read: Callable[[str], Value],
         out: dict[str, Value]) -> None:
  """Fills `out` with from_params-style {path: value} for the module of `kind` at `path`, choosing every slot.

  Parameter names carry the owning kind:variant, so same-named fields of different variants never share a
  distribution.
  """
  variant = choose(f"{path}|{kind}", grammar.variants(kind), lambda: read(path).variant)
  out[path] = variant
  for name, spec in grammar.fields(kind, variant).items():
    sub, key = join_path(path, name), f"{join_path(path, name)}|{kind}:{variant}"
    if isinstance(spec, Child):
      walk(grammar, spec.kind, sub, choose, read, out)
    elif isinstance(spec, Choice):
      out[sub] = choose(key, spec.values, lambda: read(sub))
    else:
      n = choose(f"{key}|len", range(spec.min_len, spec.max_len + 1), lambda: len(read(sub)))
      out[sub] = tuple(choose(f"{key}[{i}]", spec.element.values, lambda i=i: read(sub)[i]) for i in range(n))


def encode(space: Space, tree: Node) -> dict[str, list[int]]:
  """{parameter name: [index, number of options]} of a valid tree (its slots with more than one option)."""
  space.validate(tree)
  params: dict[str, list[int]] = {}

  def choose(name: str, options: Sequence[Value], current: Callable[[], Value]) -> Value:
    value = current()
    if len(options) > 1:
      params[name] = [next(i for i, o in enumerate(options) if same(o, value)), len(options)]
    return value

  walk(space.grammar, space.root_kind, "", choose, lambda path: get_path(tree, path), {})
  return params


def _suggester(trial: Any) -> Choose:
  """A chooser that asks the optuna trial for each option's index."""
  def choose(name: str, options: Sequence[Value], current: Callable[[], Value]) -> Value:
    del current
    options = list(options)
    return options[trial.suggest_categorical(name, list(range(len(options))))] if len(options) > 1 else options[0]
  return choose


class TPEAgent:
  name = "tpe"

  def __init__(self, seed: int = 0, n_startup_trials: int = 10, max_asks: int = 50, multivariate: bool = True,
               constant_liar: bool = True):
    try:
      import optuna  # deferred: optuna is only needed when this agent is used
    except ImportError as e:
      raise ImportError(f"agent 'tpe' needs optuna, which is not importable ({e}): pip install optuna") from None
    if n_startup_trials < 1 or max_asks < 1:
      raise ValueError(f"tpe needs n_startup_trials >= 1 and max_asks >= 1, got {n_startup_trials}, {max_asks}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # FAIL tells and per-trial INFO lines are expected noise
    self.optuna = optuna
    self.seed, self.n_startup_trials, self.max_asks, self.multivariate = seed, n_startup_trials, max_asks, multivariate
    self.constant_liar = constant_liar
    self.asks = 0
    self.history: list[list[Any]] = []  # [encoded params, told value], in observation order
    self.study = self._fresh_study()

  def _fresh_study(self) -> Any:
    return self.optuna.create_study(direction="minimize")

  def _sampler(self, liar: bool) -> Any:
    seed = int(np.random.SeedSequence([self.seed, self.asks]).generate_state(1)[0])
    with warnings.catch_warnings():  # multivariate TPE is "experimental" in optuna 4
      warnings.simplefilter("ignore", self.optuna.exceptions.ExperimentalWarning)
      return self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials,
                                             multivariate=self.multivariate, constant_liar=liar)

  def _study_with_running(self, space: Space, in_flight: tuple) -> Any:
    """The history plus the programs in flight as RUNNING trials, which the constant liar counts as bad."""
    study = self._fresh_study()
    for params, value in self.history:
      self._add(params, value, study)
    for tree in in_flight:
      self._add(encode(space, tree), None, study)
    return study

  def propose(self, state: SearchState) -> Proposal:
    space = state.space
    liar = self.constant_liar and bool(state.in_flight)
    study = self._study_with_running(space, state.in_flight) if liar else self.study
    for attempt in range(1, self.max_asks + 1):
      study.sampler = self._sampler(liar=liar)
      self.asks += 1
      trial = study.ask()
      params: dict[str, Value] = {}
      walk(space.grammar, space.root_kind, "", _suggester(trial), lambda path: None, params)
      study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
      try:
        return Proposal(tree=space.from_params(params), parent=None, info={"asks": attempt})
      except ValueError:  # breaks a constraint: ask again
        continue
    rng = np.random.default_rng([self.seed, self.asks])
    return Proposal(tree=space.sample(rng), parent=None, info={"asks": self.max_asks, "fallback": "sample"})

  def observe(self, state: SearchState, outcome: Outcome) -> None:
    if outcome.score is not None:
      value = float(outcome.score)
    elif self.history:
      value = max(v for _, v in self.history)
    else:
      return
    entry = [encode(state.space, outcome.tree), value]
    self.history.append(entry)
    self._add(*entry)

  def _add(self, params: dict[str, list[int]], value: float | None, study: Any = None) -> None:
    """A completed trial, or a running one when `value` is None."""
    dist, states = self.optuna.distributions.CategoricalDistribution, self.optuna.trial.TrialState
    (study or self.study).add_trial(self.optuna.trial.create_trial(
        params={k: i for k, (i, _) in params.items()},
        distributions={k: dist(list(range(n))) for k, (_, n) in params.items()}, value=value,
        state=states.COMPLETE if value is not None else states.RUNNING))

  def state_dict(self) -> dict:
    return {"seed": self.seed, "asks": self.asks, "history": self.history}

  def load_state_dict(self, d: dict) -> None:
    self.seed, self.asks, self.history = d["seed"], d["asks"], [list(e) for e in d["history"]]
    self.study = self._fresh_study()
    for params, value in self.history:
      self._add(params, value)

  def entropy(self) -> float | None:
    return None
