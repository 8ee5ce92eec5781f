"""PPOAgent: legal proposals only, composite log-probabilities, batches, checkpoints and resume."""
import copy
import json
import os

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrl.agents import make_agent
from arrl.agents.warm import WarmStarted
from arrl.agents.base import Outcome, SearchState
from arrl.ppo import PPOAgent, network
from arrl.ppo.batch import pad_tokens, stack_transitions
from arrl.search import search
from arrl.space import Space

import search_sim

COSTS = np.random.default_rng(7).uniform(0, 1, size=(5, 5))
SPACE_SPEC = {f"f{i}": {"choices": list(range(5))} for i in range(5)}


def cost(params: dict) -> float:
  return float(sum(COSTS[i, params[f"f{i}"]] for i in range(5)))


class Sim(search_sim.Sim):
  def __init__(self, space: Space, objective=cost):
    super().__init__(space, objective)


def same_proposal(a, b) -> bool:
  return a.tree == b.tree and a.edits == b.edits and a.info == b.info


def test_composite_logp_is_the_sum_of_its_parts_and_matches_update_time():
  space = Space.from_dict(SPACE_SPEC)
  agent = PPOAgent(seed=1, stop_bias=-2.0, init_from="none")  # mostly multi-edit proposals
  sim = Sim(space)
  props = [agent.propose(sim.state()) for _ in range(6)]
  assert max(len(p.edits) for p in props) > 1
  trs = [agent.pending[p.info["ppo_id"]] for p in props]
  cfg, params = agent.net_cfg, agent.params
  for p, tr in zip(props, trs):
    assert p.info["logp"] == pytest.approx(float(tr.logp))
    obs = jax.tree.map(lambda a: a[None], tr.obs)
    h, _ = network.encode(cfg, params, obs)
    ctx, parts = np.zeros_like(h), []
    for j in range(cfg.max_edits):
      if not tr.act.site_on[j]:
        break
      sites = jax.tree.map(lambda a: a[j][None], tr.act.sites)
      slogp, skeys = network.site_scores(cfg, params, h, ctx, j, sites)
      i = tr.act.site_idx[j]
      parts.append(float(slogp[0, i]))
      if tr.act.value_on[j]:
        values = jax.tree.map(lambda a: a[j][None], tr.act.values)
        vlogp, vkeys = network.value_scores(cfg, params, h, ctx, j, skeys[:, i], values)
        parts.append(float(vlogp[0, tr.act.value_idx[j]]))
        ctx = ctx + skeys[:, i] + vkeys[:, tr.act.value_idx[j]]
    assert len(parts) == int(tr.act.site_on.sum() + tr.act.value_on.sum())
    assert sum(parts) == pytest.approx(float(tr.logp), abs=1e-5)
    assert len(p.edits) == int(tr.act.value_on.sum())
  batch = stack_transitions(trs)
  wider = batch._replace(act=batch.act._replace(sites=pad_tokens(batch.act.sites, 16),
                                                values=pad_tokens(batch.act.values, 16)))
  for b in (batch, wider):  # padding to a bigger bucket changes nothing
    logp, _, _, _ = network.evaluate(cfg, params, b.obs, b.act)
    np.testing.assert_allclose(np.asarray(logp), [float(t.logp) for t in trs], atol=1e-5)


# One type per field: trees compare False == 0 (Python equality), so a field holding both would have edits
# that the tree layer treats as no-ops.
SCALARS = st.sampled_from([st.integers(-50, 50), st.sampled_from([0.001, 0.01, 0.5, 3.0]),
                           st.sampled_from(["a", "b", "relu", "gelu", "swiglu"]), st.booleans()])


@st.composite
def flat_spaces(draw):
  n = draw(st.integers(1, 5))
  spec = {}
  for i in range(n):
    choices = draw(st.lists(draw(SCALARS), min_size=2, max_size=5, unique=True))
    spec[f"p{i}"] = {"choices": choices, "ordinal": draw(st.booleans())}
  return Space.from_dict(spec)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=flat_spaces(), seed=st.integers(0, 2**16), n_hist=st.integers(0, 6))
def test_no_illegal_edit_is_ever_sampled(space, seed, n_hist):
  rng = np.random.default_rng(seed)
  agent = PPOAgent(seed=seed % 7)
  current = space.sample(rng)
  history = []
  for k in range(n_hist):  # a random past: some measured programs, some kept, some failed
    tree = space.sample(rng)
    failed = k % 3 == 2
    history.append(Outcome(trial_id=str(k), tree=tree, parent=current, edits=(), kept=False, sigma=0.0,
                           status="crash" if failed else "discard", score=None if failed else float(rng.uniform()),
                           best_before=0.5, info={}))
  state = SearchState(space=space, current=current, best_score=0.5, sigma=0.0, history=history, budget_used=0.3)
  props = agent.propose_batch(state, 3)
  assert props and len({p.tree for p in props}) == len(props)
  for p in props:
    tree = p.parent
    assert tree == current and 1 <= len(p.edits) <= agent.net_cfg.max_edits
    for edit in p.edits:
      assert edit.to_dict() in [e.to_dict() for e in space.legal_edits(tree)]
      tree = space.apply(tree, edit)
    assert tree == p.tree and tree != current
    tr = agent.pending[p.info["ppo_id"]]
    for j in np.flatnonzero(tr.act.site_on):
      assert tr.act.sites.mask[j, tr.act.site_idx[j]]
    for j in np.flatnonzero(tr.act.value_on):
      assert tr.act.values.mask[j, tr.act.value_idx[j]]


def test_propose_batch_gives_distinct_new_programs():
  space = Space.from_dict(SPACE_SPEC)
  sim = Sim(space)
  agent = PPOAgent(seed=3)
  props = agent.propose_batch(sim.state(), 6)
  assert len(props) == 6 and len({p.tree for p in props}) == 6
  assert all(p.tree != sim.current for p in props)
  assert len({p.info["ppo_id"] for p in props}) == 6
  assert agent.entropy() is not None and agent.entropy() > 0
  with pytest.raises(ValueError, match="n >= 1"):
    agent.propose_batch(sim.state(), 0)


def test_proposals_avoid_measured_programs():
  space = Space.from_dict({"a": {"choices": [0, 1, 2]}, "b": {"choices": [0, 1]}})
  sim = Sim(space, objective=lambda p: float(p["a"] + p["b"]))
  agent = PPOAgent(seed=0, max_edits=1, init_from="none")
  seen = [sim.step(agent).tree for _ in range(3)]  # exactly the 3 neighbours of the default
  assert len(set(seen)) == 3


def test_at_an_exhausted_local_optimum_proposals_go_further_instead_of_repeating():
  # the default (all zeros) is the optimum of a separable cost; once its 8 one-edit neighbours are measured,
  # every proposal must still be a program not measured yet (two or more edits away), not a cached repeat
  space = Space.from_dict({f"f{i}": {"choices": [0, 1, 2]} for i in range(4)})
  sim = Sim(space, objective=lambda p: float(sum(p.values())))
  agent = PPOAgent(seed=1)
  measured = {sim.current}
  for _ in range(30):
    prop = sim.step(agent)
    assert prop.tree not in measured
    measured.add(prop.tree)
  assert sum(len(p.edits) >= 2 for p in sim.history) >= 30 - 8


@pytest.mark.parametrize("orbax", [False, True])
def test_state_dict_restore_gives_the_identical_next_proposals(tmp_path, orbax):
  space = Space.from_dict(SPACE_SPEC)
  ckpt = str(tmp_path / "ppo") if orbax else None
  agent = PPOAgent(seed=4, ckpt_dir=ckpt)
  sim = Sim(space)
  for _ in range(10):  # one update (after 8) and 2 buffered transitions
    sim.step(agent)
  assert agent.updates == 1 and len(agent.buffer) == 2
  prop = agent.propose(sim.state())  # pending, as when the loop saves before running a trial
  saved = json.loads(json.dumps(agent.state_dict()))
  assert ("packed" in saved["weights"]) != orbax
  if orbax:
    assert saved["weights"] == {"orbax_step": 1, "orbax_base": 0} and len(json.dumps(saved)) < 200_000
  twin, twin_sim = PPOAgent(seed=4, ckpt_dir=ckpt), copy.deepcopy(sim)
  twin.load_state_dict(saved)
  out = sim.finish(prop)
  agent.observe(sim.state(), out)
  twin.observe(twin_sim.state(), twin_sim.finish(prop))
  for _ in range(8):  # through the next update
    a, b = sim.step(agent), twin_sim.step(twin)
    assert same_proposal(a, b)
  assert agent.updates == twin.updates == 2
  np.testing.assert_array_equal(np.asarray(agent.params), np.asarray(twin.params))


def test_load_state_dict_rejects_other_options():
  saved = PPOAgent(seed=0).state_dict()
  with pytest.raises(ValueError, match="options"):
    PPOAgent(seed=0, lr=1e-3).load_state_dict(saved)


class Objective:
  """A picklable-by-name objective that can simulate a kill (KeyboardInterrupt) at its n-th call."""

  def __init__(self, kill_at: int | None = None):
    self.calls, self.kill_at = 0, kill_at

  def __call__(self, params: dict) -> float:
    self.calls += 1
    if self.calls == self.kill_at:
      raise KeyboardInterrupt("simulated kill")
    return cost(params)


def test_loop_restart_continues_exactly_as_an_uninterrupted_run(tmp_path):
  def run(run_dir, objective):
    kwargs = {"ckpt_dir": os.path.join(run_dir, "ppo")}
    return search(SPACE_SPEC, objective, agent="ppo", max_trials=14, seed=2, run_dir=run_dir, agent_kwargs=kwargs)

  straight = run(str(tmp_path / "a"), Objective())
  with pytest.raises(KeyboardInterrupt):
    run(str(tmp_path / "b"), Objective(kill_at=11))  # killed mid-trial after the first update
  resumed = run(str(tmp_path / "b"), Objective())
  assert [t.params for t in resumed.trials] == [t.params for t in straight.trials]
  assert len(straight.trials) >= 14


def test_a_state_rebuilt_from_the_ledger_numbers_its_checkpoints_after_the_old_ones(tmp_path, capsys):
  # The rebuilt agent starts again at 0 updates. Numbered from 1 again, its checkpoint fell below the 3 kept
  # ones (2-4), the store's rotation deleted it at once, and state.json named a step that was gone.
  run_dir, ckpt = str(tmp_path), tmp_path / "ppo"
  run = lambda n: search(SPACE_SPEC, cost, agent="ppo", max_trials=n, seed=0, run_dir=run_dir)
  steps = lambda: sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
  run(33)   # 32 outcomes observed: 4 updates of 8
  assert steps() == [2, 3, 4]
  os.remove(tmp_path / "state.json")
  run(41)
  assert "rebuilding the search state" in capsys.readouterr().err
  weights = json.load(open(tmp_path / "state.json"))["agent"]["weights"]
  assert steps() == [3, 4, 5] and weights == {"orbax_step": 5, "orbax_base": 4}
  assert len(run(41).trials) >= 41   # resumes from it


def test_init_from_warm_starts_the_network(tmp_path):
  space = Space.from_dict(SPACE_SPEC)
  agent, sim = PPOAgent(seed=0, ckpt_dir=str(tmp_path / "run1")), Sim(space)
  for _ in range(8):
    sim.step(agent)
  warm = PPOAgent(seed=9, init_from=str(tmp_path / "run1"))
  np.testing.assert_array_equal(np.asarray(warm.params), np.asarray(agent.params))
  assert warm.updates == 0
  with pytest.raises(ValueError, match="do not fit"):
    PPOAgent(seed=0, d_model=32, init_from=str(tmp_path / "run1"))
  with pytest.raises(ValueError, match="no PPO checkpoint"):
    PPOAgent(seed=0, init_from=str(tmp_path / "empty"))


def test_registered_and_options_checked():
  agent = make_agent("ppo", seed=0)   # the shipped network, warm-started by the portfolio shipped beside it
  assert isinstance(agent, WarmStarted) and isinstance(agent.inner, PPOAgent)
  assert agent.name == "ppo" and agent.entropy() is None
  with pytest.raises(ValueError, match="unknown ppo option"):
    PPOAgent(colour="red")
  with pytest.raises(ValueError, match="multiple of minibatches"):
    PPOAgent(update_every=7, minibatches=2)


def test_nanochat_space_proposals_are_legal():
  nanochat_space = pytest.importorskip("arrl.nanochat_space").nanochat_space
  space = nanochat_space("gpu")
  state = SearchState(space=space, current=space.default(), best_score=1.0, sigma=0.002, history=[],
                      budget_used=0.0)
  for p in PPOAgent(seed=0, stop_bias=-1.0, init_from="none").propose_batch(state, 4):
    tree = p.parent
    for edit in p.edits:
      tree = space.apply(tree, edit)
    assert tree == p.tree
    space.validate(tree)
