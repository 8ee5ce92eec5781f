"""Meta-training of the PPO policy: one episode is a whole search run on a task from the training distribution.

    python -m arrl.pretrain --out runs/pretrain --iterations 60 --seed 0            # resumes from --out if there
    python -m arrl.pretrain --out runs/pretrain --iterations 60 --ship              # + write arrl/ppo/pretrained/
    python -m arrl.pretrain --out runs/cont --init-from shipped --seed 1             # continue the shipped network

Each iteration runs a batch of `--envs` searches of `--trials` trials at once, one per task drawn from the
training distribution: the procedural prior of synthetic spaces (`arrl.ppo.tasks.synthetic`) and, with
`--data synthetic,nas`, the NAS-Bench-Graph tables cs, physics, photo, computers, arxiv and proteins. cora,
citeseer and pubmed are held out (`arrl.ppo.tasks.HELD_OUT`): asking for them is an error. Validation runs on
fixed fresh synthetic tasks and, with NAS data, on `--eval-nas` episodes per training dataset with fixed agent
seeds that training never draws (the synthetic validation alone did not predict the NAS tables); its `combined`
value is the mean of the two sources' mean regret over the run, and the run keeps the parameters of its best
combined point in OUT/best.npz (`--ship-best` ships them). The network carries over between episodes; the
in-context history starts empty in each. The objective is the mean normalised regret of the search's kept best
over the run (0 at the optimum, ~1 for a typical random program): the area under the regret curve, so every
budget counts. Its reward is the potential-shaped form (`Episode.step`): a trial that lowers the regret by d,
with a share f of the budget still ahead (itself included), earns d * f, and the undiscounted return is the
first regret minus the run's mean regret. The plain form (reward = -regret after each step) has the same optimum but carries the current regret
in every reward, a level the critic cannot see (the optimum is unknown to the agent): its advantages were
uncorrelated with what the action did (corr 0.001 with the step's own improvement, 800 steps of the shipped
network), so the policy gradient was noise.

The environments follow `arrl.search`'s loop exactly (first trial = the default program, noise_repeats=1,
false_keep=0.5 (margin 0), measured programs served from the cache), and their proposals come from the agent's own sampling
code (`arrl.ppo.rollout`) with one jitted network call per decision step for the whole batch; so one episode
here makes the same trials as `arrl.search(space, objective, agent="ppo", agent_kwargs={"update_every": 0})`.

`--hash-shuffle` relabels the hash rows (`features.shuffle_rows`) by a permutation each training episode draws
first from its RNG: a string keeps one embedding row within an episode and gets another in the next, so the
network cannot learn what a particular field or value of the NAS-Bench-Graph space (the same space in all
nine datasets) is worth. The strings that mean the same in every space (a trial's status, an edit's op, the
token markers: `features.STRUCTURAL`) keep their rows. Validation and `agent="ppo"` keep the identity, to such a
network one relabelling among all those it trained on. `--table-init S` scales a fresh network's hash rows at
the start (0: every string starts as the zero vector; shuffled, the default random rows are noise that drowns the
numbers a token carries). `--eval-datasets` validates on other NAS training datasets than `--datasets` trains on
(a leave-datasets-out run; the held-out ones are refused here too).

`--surrogate` gives the network a surrogate (`NetConfig.surrogate`): an MLP that scores each candidate from its
numbers, trained by a supervised loss on what only meta-training knows, the drop in true regret each candidate
makes (`Episode.oracle`, `rollout.site_targets`/`value_targets`); the policy adds `sur_w` x its score to the logits
(`--guide`: sur_w's start), through a stop-gradient, so PPO learns how far to follow it.

`--neighbour-scorer FILE` gives a fresh network a neighbour scorer fitted apart (`python -m arrl.fit_scorer`,
`arrl.ppo.neighbours`): its predicted improvement of each fresh one-edit neighbour enters the first edit's site and
value logits, times nb_w (`--neighbour-guide`: its start), which PPO learns; the scorer itself stays as fitted.

`--init-from shipped|DIR` starts a fresh run from the parameters of the shipped network or of a `--ship-to DIR`
(fresh optimizer state; a network of another config is an error); a resumed run keeps its own state. The card
then names the parent (sha256, iterations) and counts the iterations and trials of the whole lineage.

`--workers N` (default: one per CPU core) steps each batch of episodes in N processes (`arrl.ppo.pool`): the same
trials; on 2 cores the episodes take ~0.5-0.6 of one process's time (which leaves the second core idle).

Writes OUT/ckpt (orbax: network, optimizer, iteration), OUT/progress.json (validation curve, throughput, best
point), OUT/best.npz, OUT/learning_curve.png; `--ship` writes the network (the last one, or with `--ship-best` the
best-validation one) and its model card to arrl/ppo/pretrained/.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

from arrl.agents.base import Outcome, SearchState
from arrl.io import write_json_atomic
from arrl.keep import NoiseModel
from arrl.loop import MAX_CACHED_IN_A_ROW
from arrl.ppo import neighbours, network, rollout
from arrl.ppo.batch import Transition, pad_rows, stack_transitions
from arrl.ppo.checkpoint import PRETRAINED, file_sha256, load_card, load_pretrained, save_pretrained
from arrl.ppo.features import FeatureConfig, HistoryStats, Tally, shuffle_rows
from arrl.ppo.pool import EpisodePool
from arrl.ppo.reward import RewardConfig
from arrl.ppo.tasks import HELD_OUT, NAS_TRAIN, Infeasible, Task, check_dataset, nas_task, synthetic
from arrl.tree import flatten

SIZES = (64, 16, 16)           # padded observation, site and value tokens: one jit shape for every task
MAX_TRIES = 20                 # samples per proposal before a measured program is accepted (as PPOAgent)
DATA = ("synthetic", "nas")


class Episode:
  """One search run on one task, with `arrl.search`'s bookkeeping (noise_repeats=1, false_keep=0.5: margin 0)."""

  def __init__(self, task: Task, trials: int):
    self.task, self.trials = task, trials
    self.current = task.space.default()
    score = self._score(self.current)
    if score is None:
      raise ValueError(f"task {task.name}: its default program is infeasible")
    self.cache: dict[Any, float | None] = {self.current: score}
    self.best_score = score
    self.sigma = NoiseModel.from_samples([score]).sigma
    self.history: list[Outcome] = []
    self.executed = 1
    self.cached_in_a_row = 0
    self._true: dict[Any, float] = {}
    self.regrets = [self.oracle(self.current)]                    # after each executed trial
    self.tally = Tally()                                          # the history statistics so far

  def oracle(self, tree: Any) -> float:
    """The true normalised regret of a program (memoised: the current program's neighbours are asked for at
    every step until one is kept): the episode's regret curve and meta-training's surrogate targets; the agent
    never sees it."""
    if tree not in self._true:  # the programs asked for are legal edits' results: no need to validate them again
      self._true[tree] = self.task.regret(flatten(tree))
    return self._true[tree]

  def __getstate__(self) -> dict[str, Any]:
    """What crosses a process boundary (`arrl.ppo.pool`): the record of the run (history, regrets, counts). The
    task (its objective is a closure) and the caches stay behind; the receiver puts its own task back."""
    return {k: v for k, v in self.__dict__.items() if k not in ("task", "cache", "_true", "tally")} | {"task": None}

  def _params(self, tree: Any) -> dict:
    return self.task.space.to_params(tree)

  def _score(self, tree: Any) -> float | None:
    try:
      s = float(self.task.objective(self._params(tree)))
    except Infeasible:
      return None
    return s if math.isfinite(s) else None

  @property
  def done(self) -> bool:
    """The budget is spent, or the space is exhausted: every program measured (the loop would go on until
    MAX_CACHED_IN_A_ROW proposals in a row were cached; that changes no result and only costs time)."""
    return (self.executed >= self.trials or self.cached_in_a_row >= MAX_CACHED_IN_A_ROW
            or (self.task.size is not None and len(self.cache) >= self.task.size))

  def state(self) -> SearchState:
    return SearchState(space=self.task.space, current=self.current, best_score=self.best_score, sigma=self.sigma,
                       history=self.history, budget_used=min(1.0, self.executed / self.trials))

  def step(self, prop: Any) -> float:
    """Runs (or serves from the cache) one proposal; returns the step's reward: the drop of the kept best's
    regret times the share of the budget left including this trial (0 for a cached program)."""
    cached = prop.tree in self.cache
    score = self.cache[prop.tree] if cached else self._score(prop.tree)
    self.cache[prop.tree] = score
    # The loop's keep test at false_keep=0.5 has margin 0: any strict gain (a cached program is never kept).
    kept = score is not None and not cached and (self.best_score is None or score < self.best_score)
    status = "crash" if score is None else "keep" if kept else "discard"
    self.history.append(Outcome(trial_id=f"{len(self.history) + 1:06d}", tree=prop.tree, parent=prop.parent,
                                edits=tuple(e.to_dict() for e in prop.edits), status=status, score=score, kept=kept,
                                best_before=self.best_score, sigma=self.sigma, info=prop.info))
    if kept:
      self.current, self.best_score = prop.tree, score
    self.cached_in_a_row = self.cached_in_a_row + 1 if cached else 0
    if cached:
      return 0.0
    self.executed += 1
    self.regrets.append(self.oracle(self.current))
    return (self.regrets[-2] - self.regrets[-1]) * (self.trials - self.executed + 1) / self.trials


@dataclasses.dataclass
class Rollout:
  episode: Episode
  transitions: list[Transition]
  rewards: list[float]
  targets: list[tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=list)  # with `targets=True`


def run_episodes(net_cfg: network.NetConfig, feat_cfg: FeatureConfig, params: Any, tasks: Sequence[Task],
                 trials: int, rngs: Sequence[np.random.Generator], hash_shuffle: bool = False,
                 targets: bool = False) -> list[Rollout]:
  """A batch of whole searches, stepped together: each step encodes every unfinished search in one call, then
  samples one proposal for each (retrying, like PPOAgent.propose, those that drew a measured program). With
  `hash_shuffle` each episode first draws its relabelling of the hash rows from its RNG (as PPOAgent does); with
  `targets` each transition comes with its candidates' surrogate targets (the same trials either way)."""
  perms = [shuffle_rows(rng, feat_cfg.buckets) if hash_shuffle else None for rng in rngs]
  eps = [Episode(t, trials) for t in tasks]
  out = [Rollout(e, [], []) for e in eps]
  while not all(e.done for e in eps):
    searches = []
    for e, rng, perm in zip(eps, rngs, perms):
      state = e.state()
      stats = HistoryStats.of(state, feat_cfg.reward, tally=e.tally)
      searches.append(rollout.Search.of(state, stats, feat_cfg, rng, perm, e.oracle if targets else None))
    h, values = rollout.encode(net_cfg, params, searches, SIZES[0])
    want = [not e.done for e in eps]
    found: list[rollout.Sampled | None] = [None] * len(eps)
    for attempt in range(MAX_TRIES):
      got = rollout.sample(net_cfg, feat_cfg, params, searches, h, values, want, SIZES[1], SIZES[2])
      for b in np.flatnonzero(want):
        if got[b].proposal.tree not in searches[b].stats.measured or attempt == MAX_TRIES - 1:
          found[b], want[b] = got[b], False
      if not any(want):
        break
    for b, s in enumerate(found):
      if s is not None:
        info = {"ppo_id": len(out[b].transitions), "logp": float(s.transition.logp),
                "value": float(s.transition.value), "entropy": s.entropy}
        out[b].rewards.append(eps[b].step(dataclasses.replace(s.proposal, info=info)))
        out[b].transitions.append(s.transition)
        if targets:
          out[b].targets.append(s.targets)
  return out


def advantages(rewards: Sequence[float], values: Sequence[float], gamma: float, lam: float) -> tuple[np.ndarray,
                                                                                                      np.ndarray]:
  """GAE over one finished episode (no bootstrap after its last step)."""
  r, v = np.asarray(rewards, np.float64), np.asarray(values, np.float64)
  nxt = np.append(v[1:], 0.0)
  delta = r + gamma * nxt - v
  adv = np.zeros_like(r)
  acc = 0.0
  for t in range(len(r) - 1, -1, -1):
    acc = delta[t] + gamma * lam * acc
    adv[t] = acc
  return adv, adv + v


def ppo_batch(res: Sequence[Rollout], gamma: float, lam: float, size: int, rng: np.random.Generator
              ) -> tuple[Transition, np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
  """One iteration's PPO batch: GAE per episode, then `size` of all the episodes' transitions drawn by `rng`
  and kept in order (a fixed size: one compiled update). (batch, its advantages, its returns, every return, the
  batch's surrogate targets [size, M, S] and [size, M, V] padded like its tokens, or None without targets)."""
  trs, adv, ret, tgt = [], [], [], []
  for r in res:
    a, g = advantages(r.rewards, [float(t.value) for t in r.transitions], gamma, lam)
    trs += r.transitions
    tgt += r.targets
    adv.append(a)
    ret.append(g)
  keep = np.sort(rng.permutation(len(trs))[:size])
  returns = np.concatenate(ret)
  batch = stack_transitions([trs[i] for i in keep], SIZES)
  targets = None
  if tgt:
    targets = (pad_rows([tgt[i][0] for i in keep], batch.act.sites.kind.shape),
               pad_rows([tgt[i][1] for i in keep], batch.act.values.kind.shape))
  return batch, np.concatenate(adv)[keep].astype(np.float32), returns[keep].astype(np.float32), returns, targets


def regret_summary(curves: np.ndarray) -> dict[str, float]:
  """[episodes, trials] regret curves -> their mean over the run, at the end and after 25 trials."""
  return {"mean_regret": float(curves.mean()), "final_regret": float(curves[:, -1].mean()),
          "regret_at_25": float(curves[:, min(24, curves.shape[1] - 1)].mean())}


# ---------------------------------------------------------------------------------------------------------------
# Training.

@dataclasses.dataclass(frozen=True)
class Config:
  out: str = "runs/pretrain"
  iterations: int = 60
  envs: int = 8
  trials: int = 100
  seed: int = 0
  data: tuple[str, ...] = DATA
  nas_share: float = 0.25        # share of episodes on NAS-Bench-Graph tables (when "nas" is in data)
  datasets: tuple[str, ...] = NAS_TRAIN
  eval_datasets: tuple[str, ...] | None = None   # NAS validation datasets (None: `datasets`); never held-out ones
  eval_every: int = 5
  eval_tasks: int = 16
  eval_nas: int = 2              # validation episodes per NAS training dataset (when "nas" is in data; 0 = none)
  gamma: float = 1.0             # the shaped rewards already weigh a gain by the budget left after it
  gae_lambda: float = 0.95
  lr: float = 3e-4
  epochs: int = 3
  minibatches: int = 4
  ent_coef: float = 0.003
  init_from: str | None = None   # "shipped" or a --ship-to directory: the network a fresh run starts from
  hash_shuffle: bool = False     # each training episode relabels the hash rows (features.shuffle_rows)
  table_init: float = 1.0        # scale of a fresh network's hashed-string rows (network.init_params table_scale)
  surrogate: bool = False        # the network has a surrogate, trained on every candidate's true regret
  guide: float = 10.0            # a fresh surrogate network's starting weight of the surrogate in the logits
  site_guide_from_values: bool = False  # sites guided by their values' best predicted gain (NetConfig's field)
  neighbour_scorer: str | None = None  # a fresh network following this scorer (`python -m arrl.fit_scorer`)
  neighbour_guide: float = 300.0  # its starting weight in the logits
  workers: int = 1               # processes stepping the episodes (`arrl.ppo.pool`; the same trials for any number)

  def __post_init__(self) -> None:
    for d in self.datasets + (self.eval_datasets or ()):
      check_dataset(d)
    if self.eval_datasets is not None and not self.eval_datasets:
      raise ValueError("--eval-datasets: no dataset given")
    bad = sorted(set(self.data) - set(DATA))
    if bad or not self.data:
      raise ValueError(f"--data: unknown source(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(DATA)}")
    if not self.table_init >= 0:
      raise ValueError(f"--table-init must be >= 0, got {self.table_init}")
    if (self.guide != DEFAULTS["guide"] or self.site_guide_from_values) and not self.surrogate:
      raise ValueError("--guide and --site-guide-from-values concern the surrogate: they need --surrogate")
    if self.neighbour_guide != DEFAULTS["neighbour_guide"] and not self.neighbour_scorer:
      raise ValueError("--neighbour-guide is the --neighbour-scorer's weight: it needs --neighbour-scorer")
    if ((self.table_init, self.guide) != (DEFAULTS["table_init"], DEFAULTS["guide"]) or self.neighbour_scorer) \
        and self.init_from:
      raise ValueError("--table-init, --guide and --neighbour-scorer set up a fresh network: not with --init-from "
                       "(the parent brings its own)")
    if (min(self.iterations, self.envs, self.eval_every, self.eval_tasks, self.workers) < 1 or self.trials < 10
        or self.eval_nas < 0):
      raise ValueError("--iterations, --envs, --eval-every, --eval-tasks, --workers must be >= 1, --eval-nas >= 0 and "
                       "--trials >= 10")

  @property
  def val_datasets(self) -> tuple[str, ...]:
    """The NAS datasets validated on (none without NAS data)."""
    return val_datasets(dataclasses.asdict(self))


DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)}   # named once: for the checks above and old configs


def val_datasets(config: dict[str, Any]) -> tuple[str, ...]:
  """The NAS datasets a run with this (saved) config validates on (none without NAS data)."""
  return tuple(config.get("eval_datasets") or config["datasets"]) if "nas" in config["data"] else ()


def kept_on_resume(config: dict[str, Any]) -> dict[str, Any]:
  """The settings of a (saved) config a resumed run must keep, by flag: its validation curve and best point compare
  like with like only, half a run each way with --hash-shuffle would be neither, and the card names the
  --table-init the network started from (runs from before a setting existed read as its old behaviour)."""
  nas = "nas" in config["data"]
  return {"--seed": config["seed"], "--data": ",".join(config["data"]), "--eval-tasks": config["eval_tasks"],
          "--eval-nas": config.get("eval_nas", 0) if nas else 0,
          "--eval-datasets": ",".join(val_datasets(config)) or "none",
          "--hash-shuffle": config.get("hash_shuffle", DEFAULTS["hash_shuffle"]),
          "--table-init": config.get("table_init", DEFAULTS["table_init"]),
          "--surrogate": config.get("surrogate", DEFAULTS["surrogate"]), "--guide": config.get("guide", DEFAULTS["guide"]),
          "--site-guide-from-values": config.get("site_guide_from_values", DEFAULTS["site_guide_from_values"]),
          "--neighbour-scorer": config.get("neighbour_scorer"),
          "--neighbour-guide": config.get("neighbour_guide", DEFAULTS["neighbour_guide"])}


def scorer_record(path: str | None) -> dict[str, Any] | None:
  """What the card says of a run's neighbour scorer: its file, sha256 and how it was fitted."""
  if not path:
    return None
  with np.load(path) as z:
    meta = json.loads(z["meta"].tobytes().decode())
  return {"file": path, "sha256": file_sha256(path), **meta}


def parent_of(init_from: str, net_cfg: network.NetConfig) -> tuple[np.ndarray, dict[str, Any]]:
  """The parameters a run starts from (`--init-from shipped|DIR`) and the record of that parent for the card."""
  directory = PRETRAINED if init_from == "shipped" else init_from
  params = load_pretrained(directory, net_cfg, scratch="without --init-from")
  card = load_card(directory)
  if card is None:
    raise ValueError(f"{os.path.join(directory, 'card.json')}: missing; --init-from needs the card written with "
                     "params.npz (its lineage)")
  # A card from before lineages were recorded is the root of its lineage.
  return params, {"init_from": init_from, "params_sha256": file_sha256(os.path.join(directory, "params.npz")),
                  "iterations": card["iterations"], "command": card.get("command"),
                  "lineage_iterations": card.get("lineage_iterations", card["iterations"]),
                  "lineage_simulated_trials": card.get("lineage_simulated_trials", card["simulated_trials"])}


class Pretrainer:
  def __init__(self, cfg: Config):
    import jax
    from arrl.ppo.agent import AgentConfig
    from arrl.ppo.checkpoint import OrbaxStore
    from arrl.ppo.update import PPOConfig, make_optimizer
    self.cfg = cfg
    agent = AgentConfig()
    self.net_cfg = network.NetConfig(surrogate=cfg.surrogate, site_guide_from_values=cfg.site_guide_from_values,
                                     neighbour_guide=cfg.neighbour_scorer is not None)
    self.feat_cfg = FeatureConfig(buckets=self.net_cfg.buckets, history=agent.history,
                                  max_edits=self.net_cfg.max_edits, reward=RewardConfig())
    # The shaped rewards are small (a gain of 0.1 regret is a big step) and most are 0, so the advantages'
    # std is ~0.1: the within-run floor of 0.5 (made for noise-unit rewards) would shrink them 5x.
    self.ppo_cfg = PPOConfig(lr=cfg.lr, epochs=cfg.epochs, minibatches=cfg.minibatches, adv_std_floor=1e-3,
                             split_stop_entropy=True)
    params = network.init_params(self.net_cfg, cfg.seed, agent.stop_bias, agent.prior, cfg.table_init, cfg.guide,
                                 cfg.neighbour_guide)
    if cfg.neighbour_scorer:
      params = network.with_scorer(self.net_cfg, params, neighbours.load_scorer(cfg.neighbour_scorer))
    self.params = jax.numpy.asarray(params)
    self.opt_state = make_optimizer(self.ppo_cfg).init(self.params)
    self.key = np.asarray(jax.random.PRNGKey(cfg.seed), np.uint32)
    self.progress_path = os.path.join(cfg.out, "progress.json")
    self.best_path = os.path.join(cfg.out, "best.npz")
    self.progress: dict[str, Any] = {"config": dataclasses.asdict(cfg), "iteration": 0, "curve": [], "log": [],
                                     "trials": 0, "seconds": 0.0, "parent": None, "best": None}
    self._nas: dict[str, Task] = {}
    self._val: list[Task] | None = None
    resume = os.path.exists(self.progress_path)
    if cfg.init_from and not resume:  # before the store makes OUT: a bad parent leaves nothing behind
      params, self.progress["parent"] = parent_of(cfg.init_from, self.net_cfg)
      self.params = jax.numpy.asarray(params)  # the optimizer state stays fresh: no Adam moments come with it
    self.store = OrbaxStore(os.path.join(cfg.out, "ckpt"), keep=2)
    self.pool = EpisodePool(cfg.workers)
    if resume:
      with open(self.progress_path) as f:
        saved = json.load(f)
      old, new = kept_on_resume(saved["config"]), kept_on_resume(dataclasses.asdict(cfg))
      if old != new:
        diff = [k for k in new if old[k] != new[k]]
        raise ValueError(f"{cfg.out} holds a run with {', '.join(f'{k} {old[k]}' for k in diff)}, not "
                         f"{', '.join(f'{k} {new[k]}' for k in diff)}; resume it the same way or use another --out")
      # the run keeps what it started from, whatever --init-from says now (the parent may have been replaced)
      self.progress = {"parent": None, "best": None, **saved,
                       "config": {**dataclasses.asdict(cfg), "init_from": saved["config"].get("init_from")}}
      for point in self.progress["curve"]:  # a run from before NAS validation: synthetic only
        point.setdefault("combined", point["mean_regret"])
      restored = self.store.restore(self.progress["iteration"], {"params": self.params, "opt_state": self.opt_state,
                                                                 "key": self.key})  # step 0 too: a parent's copy
      self.params, self.opt_state, self.key = restored["params"], restored["opt_state"], restored["key"]

  def tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
    out = []
    for _ in range(n):
      if "nas" in self.cfg.data and ("synthetic" not in self.cfg.data or rng.random() < self.cfg.nas_share):
        out.append(self.nas(self.cfg.datasets[int(rng.integers(len(self.cfg.datasets)))]))
      else:
        out.append(synthetic(rng))
    return out

  def nas(self, name: str) -> Task:
    if name not in self._nas:
      self._nas[name] = nas_task(name)
    return self._nas[name]

  def validate(self) -> dict[str, Any]:
    """One validation point (never held-out data): the normalised regret (mean over the run, after 25 trials, at
    the end) on fixed fresh synthetic tasks (top-level keys, as in runs before NAS validation) and, with NAS
    data, on `eval_nas` episodes per training dataset ("nas"); "combined" is the mean of the two sources' mean
    regret over the run (the synthetic one alone without NAS validation)."""
    if self._val is None:  # drawn once: building a task's optimum costs ~0.1-0.4 s
      rng = np.random.default_rng([self.cfg.seed, 10 ** 6])
      self._val = [synthetic(rng, f"val{i}") for i in range(self.cfg.eval_tasks)]
      self._val += [self.nas(d) for d in self.cfg.val_datasets for _ in range(self.cfg.eval_nas)]
    n = self.cfg.eval_tasks
    # agent seeds: [seed, 10**6, i] for synthetic task i, [seed, 10**6 + 1, j] for NAS episode j; training's
    # are [seed, iteration, env] with iteration < 10**6
    rngs = [np.random.default_rng([self.cfg.seed, 10 ** 6 + (i >= n), i if i < n else i - n])
            for i in range(len(self._val))]
    res = self.pool.run(self.net_cfg, self.feat_cfg, self.params, self._val, self.cfg.trials, rngs)
    # an exhausted space keeps its last regret for the rest of the budget
    curves = np.array([(r.episode.regrets + [r.episode.regrets[-1]] * self.cfg.trials)[:self.cfg.trials] for r in res])
    point: dict[str, Any] = regret_summary(curves[:n])
    point["combined"] = point["mean_regret"]
    if len(self._val) > n:
      nas = curves[n:]
      point["nas"] = {**regret_summary(nas), "per_dataset": {
          d: float(nas[k * self.cfg.eval_nas:(k + 1) * self.cfg.eval_nas].mean()) for k, d in enumerate(self.cfg.val_datasets)}}
      point["combined"] = (point["mean_regret"] + point["nas"]["mean_regret"]) / 2
    return point

  def keep_best(self) -> None:
    """Keeps the parameters of the lowest combined validation so far in OUT/best.npz with their iteration (written
    before progress.json names them: after a kill in between, `--ship-best` sees the iterations differ and refuses;
    the resumed run repeats that point and writes both again)."""
    point, best = self.progress["curve"][-1], self.progress["best"]
    if best is None or point["combined"] < best["combined"]:
      tmp = f"{self.best_path}.{os.getpid()}.tmp.npz"
      np.savez(tmp, params=np.asarray(self.params, np.float32), iteration=point["iteration"])
      os.replace(tmp, self.best_path)
      self.progress["best"] = {"iteration": point["iteration"], "combined": point["combined"]}

  def best_params(self) -> np.ndarray:
    """The parameters of the best combined validation point (one clear error when there are none)."""
    best = self.progress["best"]
    if best is None or not os.path.exists(self.best_path):
      raise ValueError(f"{self.best_path}: no best validation point kept (a run from before --ship-best)")
    with np.load(self.best_path) as z:
      if int(z["iteration"]) != best["iteration"]:
        raise ValueError(f"{self.best_path}: holds iteration {int(z['iteration'])}, {self.progress_path} names "
                         f"{best['iteration']} (killed between the two writes: resume the run)")
      return z["params"]

  def iterate(self, it: int) -> dict[str, float]:
    import jax
    from arrl.ppo.update import update_from_advantages
    rng = np.random.default_rng([self.cfg.seed, it])
    tasks = self.tasks(rng, self.cfg.envs)
    rngs = [np.random.default_rng([self.cfg.seed, it, b]) for b in range(self.cfg.envs)]
    t0 = time.perf_counter()
    res = self.pool.run(self.net_cfg, self.feat_cfg, self.params, tasks, self.cfg.trials, rngs, self.cfg.hash_shuffle,
                        targets=self.net_cfg.surrogate)
    rollout_seconds = time.perf_counter() - t0
    batch, adv, ret, returns, targets = ppo_batch(res, self.cfg.gamma, self.cfg.gae_lambda,
                                                  self.cfg.envs * (self.cfg.trials - 1), rng)
    self.key, sub = (np.asarray(k, np.uint32) for k in jax.random.split(self.key))
    self.params, self.opt_state, metrics = update_from_advantages(
        self.net_cfg, self.ppo_cfg, self.params, self.opt_state, batch, adv, ret, sub, np.float32(self.cfg.ent_coef),
        targets)
    out = {k: float(v) for k, v in metrics.items()}
    values = np.array([float(t.value) for r in res for t in r.transitions])
    out["value_explained"] = float(1 - np.var(returns - values) / max(np.var(returns), 1e-12))
    out["train_return"] = float(np.mean([np.sum(r.rewards) for r in res]))
    out["train_regret"] = float(np.mean([np.mean(r.episode.regrets) for r in res]))
    outcomes = [o for r in res for o in r.episode.history]
    out["edits_per_proposal"] = float(np.mean([len(o.edits) for o in outcomes]))
    out["kept_share"] = float(np.mean([o.kept for o in outcomes]))
    out["trials"] = sum(r.episode.executed for r in res)
    out["rollout_seconds"] = rollout_seconds   # the rest of the iteration is mostly the PPO update
    return out

  def save(self) -> None:
    it = self.progress["iteration"]
    self.store.save(it, {"params": self.params, "opt_state": self.opt_state, "key": self.key})
    write_json_atomic(self.progress_path, self.progress)

  def run(self) -> None:
    try:
      self._run()
    finally:
      self.pool.close()

  def _run(self) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    os.makedirs(self.cfg.out, exist_ok=True)
    if not self.progress["curve"]:
      self.progress["curve"].append({"iteration": 0, **self.validate()})
      self.keep_best()
      self.save()
    with Progress(TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[info]}")) as bar:
      task = bar.add_task("", total=self.cfg.iterations, completed=self.progress["iteration"], info="")
      while self.progress["iteration"] < self.cfg.iterations:
        t0 = time.perf_counter()
        metrics = self.iterate(self.progress["iteration"] + 1)
        dt = time.perf_counter() - t0
        self.progress["iteration"] += 1
        self.progress["trials"] += metrics["trials"]
        self.progress["seconds"] += dt
        self.progress["log"].append({"iteration": self.progress["iteration"], "seconds": dt, **metrics})
        if self.progress["iteration"] % self.cfg.eval_every == 0 or self.progress["iteration"] == self.cfg.iterations:
          self.progress["curve"].append({"iteration": self.progress["iteration"], **self.validate()})
          self.keep_best()
        self.save()
        rate = self.progress["trials"] / max(self.progress["seconds"], 1e-9) * 60
        bar.update(task, completed=self.progress["iteration"],
                   info=f"train regret {metrics['train_regret']:.3f} return {metrics['train_return']:.3f}  "
                        f"kl {metrics['approx_kl']:.3f}  val {self.progress['curve'][-1]['combined']:.3f}"
                        f"  {rate:,.0f} trials/min")
    plot(self.progress, os.path.join(self.cfg.out, "learning_curve.png"))


def plot(progress: dict, path: str) -> None:
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return
  curve = progress["curve"]
  its = [c["iteration"] for c in curve]
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for key, label in (("mean_regret", "synthetic, mean over the run"), ("regret_at_25", "synthetic, after 25 trials"),
                     ("final_regret", "synthetic, at the end")):
    ax.plot(its, [c[key] for c in curve], marker="o", ms=3, alpha=0.6, label=label)
  if "nas" in curve[-1]:
    ax.plot(its, [c["nas"]["mean_regret"] for c in curve], marker="s", ms=3, label="NAS training sets, mean over the run")
    ax.plot(its, [c["combined"] for c in curve], color="k", lw=2, label="combined (mean of the two)")
  best = progress.get("best")
  if best is not None:
    ax.plot([best["iteration"]], [best["combined"]], "r*", ms=14, label=f"best combined (iteration {best['iteration']})")
  ax.set_xlabel(f"meta-training iteration ({progress['config']['envs']} episodes of {progress['config']['trials']} trials)")
  ax.set_ylabel("normalised regret (validation)")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _workers(text: str) -> int:
  """--workers: a positive number, or auto (one per CPU core)."""
  if text == "auto":
    return os.cpu_count() or 1
  if not text.isdigit() or int(text) < 1:
    raise argparse.ArgumentTypeError(f"expected a positive number or auto, got {text!r}")
  return int(text)


def parse_args(argv: list[str] | None) -> tuple[Config, str | None]:
  p = argparse.ArgumentParser(prog="python -m arrl.pretrain", description=__doc__.split("\n\n")[0])
  defaults = Config()
  p.add_argument("--out", default=defaults.out, help="run directory (resumed when it exists)")
  p.add_argument("--iterations", type=int, default=defaults.iterations)
  p.add_argument("--envs", type=int, default=defaults.envs, help="episodes per iteration, stepped together")
  p.add_argument("--trials", type=int, default=defaults.trials, help="trials per episode (search run)")
  p.add_argument("--seed", type=int, default=defaults.seed)
  p.add_argument("--data", default=",".join(defaults.data), help=f"task sources, from: {', '.join(DATA)}")
  p.add_argument("--datasets", default=",".join(defaults.datasets),
                 help=f"NAS-Bench-Graph training datasets ({', '.join(HELD_OUT)} are held out)")
  p.add_argument("--nas-share", type=float, default=defaults.nas_share)
  p.add_argument("--eval-datasets", metavar="D1,D2",
                 help="NAS validation datasets (default: --datasets); training datasets only, need not be trained on")
  p.add_argument("--hash-shuffle", action="store_true",
                 help="relabel the hash rows per training episode: no fixed string identities to memorise (a "
                      "resumed run keeps its setting)")
  p.add_argument("--table-init", type=float, default=defaults.table_init,
                 help="scale of a fresh network's hashed-string embedding rows (0: strings start as zero vectors, "
                      "tokens as their numbers; with --hash-shuffle the random rows otherwise drown the numbers)")
  p.add_argument("--surrogate", action="store_true",
                 help="a network with a surrogate: a scorer of candidates from their numbers, trained on the true "
                      "regret each candidate leads to (known in meta-training), whose scores the policy adds to its "
                      "logits with a learned weight")
  p.add_argument("--guide", type=float, default=defaults.guide,
                 help="with --surrogate: the surrogate's starting weight in the logits (learned from there)")
  p.add_argument("--site-guide-from-values", action="store_true",
                 help="with --surrogate: a site's guide score is the best predicted gain among its values")
  p.add_argument("--neighbour-scorer", metavar="FILE",
                 help="a fresh network that follows this neighbour scorer (`python -m arrl.fit_scorer`): its predicted "
                      "improvement of each first edit's site and value, times a learned weight, enters the logits")
  p.add_argument("--neighbour-guide", type=float, default=defaults.neighbour_guide,
                 help="with --neighbour-scorer: the scorer's starting weight in the logits")
  p.add_argument("--workers", type=_workers, default="auto",
                 help="processes stepping the episodes, this one included (auto: one per CPU core); any number makes "
                      "the same trials")
  p.add_argument("--eval-every", type=int, default=defaults.eval_every)
  p.add_argument("--eval-tasks", type=int, default=defaults.eval_tasks, help="synthetic validation tasks")
  p.add_argument("--eval-nas", type=int, default=defaults.eval_nas,
                 help="validation episodes per NAS training dataset (with --data ...nas; 0 = none)")
  p.add_argument("--lr", type=float, default=defaults.lr)
  p.add_argument("--init-from", metavar="shipped|DIR",
                 help="start from the shipped network or a --ship-to DIR's (a fresh --out only: a resumed run keeps "
                      "its own state)")
  p.add_argument("--ship", action="store_true", help="write the trained network to arrl/ppo/pretrained/")
  p.add_argument("--ship-to", help="write the trained network and its card to this directory instead (for ablations: "
                                   "PPOAgent(init_from=DIR))")
  p.add_argument("--ship-best", action="store_true",
                 help="ship the network of the best combined validation point instead of the last one")
  args = p.parse_args(argv)
  split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())
  try:
    cfg = Config(out=args.out, iterations=args.iterations, envs=args.envs, trials=args.trials, seed=args.seed,
                 data=split(args.data), datasets=split(args.datasets), nas_share=args.nas_share,
                 eval_every=args.eval_every, eval_tasks=args.eval_tasks, eval_nas=args.eval_nas, lr=args.lr,
                 init_from=args.init_from, hash_shuffle=args.hash_shuffle, table_init=args.table_init,
                 surrogate=args.surrogate, guide=args.guide, site_guide_from_values=args.site_guide_from_values,
                 neighbour_scorer=args.neighbour_scorer, neighbour_guide=args.neighbour_guide,
                 eval_datasets=split(args.eval_datasets) if args.eval_datasets is not None else None,
                 workers=args.workers)
  except ValueError as e:
    p.error(str(e))
  ship = args.ship_to or (PRETRAINED if args.ship else None)
  if args.ship_best and not ship:
    p.error("--ship-best: needs --ship or --ship-to")
  return cfg, ship, args.ship_best


def main(argv: list[str] | None = None) -> int:
  cfg, ship, ship_best = parse_args(argv)
  try:
    trainer = Pretrainer(cfg)
  except ValueError as e:
    print(f"python -m arrl.pretrain: error: {e}", file=sys.stderr)
    return 2
  trainer.run()
  prog = trainer.progress
  print(f"{prog['iteration']} iterations, {prog['trials']:,} simulated trials in {prog['seconds']:.0f} s "
        f"({prog['trials'] / max(prog['seconds'], 1e-9) * 60:,.0f} trials/min); validation regret (combined) "
        f"{prog['curve'][0]['combined']:.3f} -> {prog['curve'][-1]['combined']:.3f}" +
        (f", best {prog['best']['combined']:.3f} at iteration {prog['best']['iteration']}" if prog["best"] else ""),
        file=sys.stderr)
  if ship:
    try:
      params = trainer.best_params() if ship_best else np.asarray(trainer.params)
    except ValueError as e:
      print(f"python -m arrl.pretrain: error: {e}", file=sys.stderr)
      return 2
    it = prog["best"]["iteration"] if ship_best else prog["iteration"]
    log = [x for x in prog["log"] if x["iteration"] <= it]   # what the shipped network was trained on
    trials = sum(x["trials"] for x in log)
    point = next(c for c in prog["curve"] if c["iteration"] == it) if ship_best else prog["curve"][-1]
    parent = prog.get("parent")
    command = "python -m arrl.pretrain " + " ".join(sys.argv[1:] if argv is None else argv)
    save_pretrained(ship, trainer.net_cfg, params, {
        "command": command, "data": list(cfg.data), "nas_datasets": list(cfg.datasets) if "nas" in cfg.data else [],
        "nas_validation_datasets": list(cfg.val_datasets), "hash_shuffle": cfg.hash_shuffle,
        "table_init": cfg.table_init, "surrogate": cfg.surrogate, "guide": cfg.guide,
        "neighbour_scorer": scorer_record(cfg.neighbour_scorer), "neighbour_guide": cfg.neighbour_guide,
        "held_out": list(HELD_OUT), "seed": cfg.seed, "iterations": it, "episodes_per_iteration": cfg.envs,
        "trials_per_episode": cfg.trials, "simulated_trials": trials,
        "wall_seconds": round(sum(x["seconds"] for x in log)),
        "validation": point, "validation_start": prog["curve"][0],
        "shipped_point": (f"best combined validation: iteration {it} of {prog['iteration']}" if ship_best
                          else f"the last iteration ({it})"),
        "parent": parent, "lineage_iterations": it + (parent["lineage_iterations"] if parent else 0),
        "lineage_simulated_trials": trials + (parent["lineage_simulated_trials"] if parent else 0)})
    print(f"wrote {ship}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
