"""The neighbour scorer (`arrl.ppo.neighbours`, `python -m arrl.fit_scorer`) and a network that follows it
(`NetConfig.neighbour_guide`, `arrl.pretrain --neighbour-scorer`)."""
import numpy as np
import pytest

import arrl.search
from arrl import fit_scorer, pretrain
from arrl.agents.base import Outcome, SearchState
from arrl.ppo import network, neighbours, tasks
from arrl.ppo.agent import AgentConfig
from arrl.ppo.batch import stack_transitions
from arrl.ppo.checkpoint import save_pretrained
from arrl.ppo.features import Candidates, FeatureConfig, HistoryStats, _settings
from arrl.ppo.reward import RewardConfig
from arrl.space import Space

NET = network.NetConfig(neighbour_guide=True)
SPACE = Space.from_dict({"a": {"choices": [1, 2, 3, 4], "ordinal": True}, "b": {"choices": ["x", "y", "z"]},
                         "c": {"choices": [0.1, 0.2]}})


def _state(scores: dict) -> SearchState:
  """The default program measured first, then the given {params: score or None (a crash)}; the best is current."""
  cur, best = SPACE.default(), 5.0
  history = [Outcome(trial_id="000001", tree=cur, parent=None, edits=(), status="keep", score=best, kept=True,
                     best_before=None, sigma=1.0)]
  for k, (params, score) in enumerate(scores.items()):
    tree = SPACE.from_params(dict(params))
    kept = score is not None and score < best
    history.append(Outcome(trial_id=f"{k + 2:06d}", tree=tree, parent=cur, edits=(), status="crash" if score is None
                           else "keep" if kept else "discard", score=score, kept=kept, best_before=best, sigma=1.0))
    if kept:
      cur, best = tree, score
  return SearchState(space=SPACE, current=cur, best_score=best, sigma=1.0, history=history, budget_used=0.3)


def _feats(state: SearchState):
  stats = HistoryStats.of(state, RewardConfig())
  c = Candidates.of(SPACE, state.current, set(), stats)
  progs, r = neighbours.measured_regrets(state.history, stats)
  return c, progs, r, neighbours.neighbour_feats(state, c, stats)


def test_features_cover_every_fresh_neighbour_and_measure_edit_distances_exactly():
  state = _state({(("a", 2), ("b", "y"), ("c", 0.1)): 6.0, (("a", 1), ("b", "z"), ("c", 0.2)): None,
                  (("a", 4), ("b", "x"), ("c", 0.2)): 4.0, (("a", 3), ("b", "y"), ("c", 0.2)): 7.0})
  c, progs, r, (where, X) = _feats(state)
  fresh = {(s, i) for s in c.sites for i, f in enumerate(c.fresh[s]) if f}
  assert set(where) == fresh and len(where) == len(fresh) and X.shape == (len(fresh), neighbours.N_FEATS)
  assert sorted(r)[0] == -1.0 and r.max() == 0.0 and len(progs) == 5   # the crash; the best (the current program)
  for (site, i), row in zip(where, X):
    child = dict(_settings(c.children[site][i]))
    d = np.array([sum(child[k] != v for k, v in prog.items()) for prog in progs])   # brute force, per program
    w = np.exp(-d / 1.0)
    assert row[7] == pytest.approx((w * r).sum() / w.sum(), abs=1e-6)   # kernel mean at length 1 edit
    assert row[9] == pytest.approx(d.min() / len(child))                 # nearest measured program
    assert row[11] == pytest.approx(r[d <= 1].mean() if (d <= 1).any() else -1.0, abs=1e-6)
    assert row[20] == 1.0 and row[21] == pytest.approx(0.3)              # fresh; budget used


def test_fit_learns_a_smooth_target_and_the_file_round_trips(tmp_path):
  rng = np.random.default_rng(0)
  X = rng.normal(size=(4000, neighbours.N_FEATS)).astype(np.float32)
  Y = (np.tanh(X[:, 0]) + 0.5 * X[:, 3] * X[:, 5]).astype(np.float32)
  w = neighbours.fit(X, Y, steps=600)
  assert np.mean((neighbours.scores(w, X) - Y) ** 2) < 0.1 * Y.var()
  path = str(tmp_path / "s.npz")
  neighbours.save_scorer(path, w, {"note": "test"})
  back = neighbours.load_scorer(path)
  assert all(np.array_equal(a, b) for la, lb in zip(w, back) for a, b in zip(la, lb))
  np.savez(str(tmp_path / "other.npz"), x=np.zeros(3))
  with pytest.raises(ValueError, match="not a neighbour scorer"):
    neighbours.load_scorer(str(tmp_path / "other.npz"))
  with pytest.raises(ValueError, match=r"need rows \[N, 24\]"):
    neighbours.fit(X[:, :5], Y)


def test_scorer_weights_live_in_the_flat_vector_and_a_foreign_shape_is_refused():
  flat = network.init_params(NET, 0, neighbour_guide=123.0)
  w = neighbours.fit(np.ones((8, neighbours.N_FEATS), np.float32), np.ones(8, np.float32), steps=2)
  out = network.with_scorer(NET, flat, w)
  assert all(np.array_equal(a, b) for la, lb in zip(network.scorer_weights(NET, out), w) for a, b in zip(la, lb))
  assert np.count_nonzero(out != flat) <= sum(a.size + b.size for a, b in w)   # nothing else moved
  with pytest.raises(ValueError, match="do not fit"):
    network.with_scorer(NET, flat, w[:2])
  with pytest.raises(ValueError, match="no neighbour scorer"):
    network.scorer_weights(network.NetConfig(), network.init_params(network.NetConfig(), 0))


def _guided_params(nb_w: float = 300.0) -> np.ndarray:
  """A fresh network with a scorer fitted to 'a step up an ordinal ladder improves' (a scorer with an opinion)."""
  rng = np.random.default_rng(0)
  X = rng.normal(size=(2000, neighbours.N_FEATS)).astype(np.float32)
  w = neighbours.fit(X, np.maximum(0, X[:, 16]).astype(np.float32) * 0.05, steps=200)  # column 16: ordinal step
  return network.with_scorer(NET, network.init_params(NET, 0, AgentConfig().stop_bias, AgentConfig().prior,
                                                      neighbour_guide=nb_w), w)


def test_a_guided_network_samples_vectorised_as_the_agent_does_and_its_logits_follow_the_guide(tmp_path):
  params = _guided_params()
  directory = str(tmp_path / "net")
  save_pretrained(directory, NET, params, {"command": "test"})
  cfg = AgentConfig()
  feat = FeatureConfig(buckets=NET.buckets, history=cfg.history, max_edits=NET.max_edits)
  rng = np.random.default_rng(3)
  batch = [tasks.synthetic(rng) for _ in range(2)]
  res = pretrain.run_episodes(NET, feat, params, batch, 20, [np.random.default_rng(4) for _ in batch])
  for task, r in zip(batch, res):
    seq = arrl.search.search(task.space, task.objective, agent="ppo", max_trials=20, seed=4, noise_repeats=1,
                             false_keep=0.5, agent_kwargs={"init_from": directory, "update_every": 0})
    assert [(t.params, t.score) for t in seq.trials][1:] == [(task.space.to_params(o.tree), o.score)
                                                             for o in r.episode.history]
    # the first step's tokens carry the guide (later steps' do not), and the update's re-evaluation of the stored
    # transitions reproduces the sampled log-probabilities
    tr = stack_transitions(r.transitions, pretrain.SIZES)
    assert np.abs(tr.act.sites.guide[:, 0]).max() > 0 and not tr.act.sites.guide[:, 1:].any()
    logp, *_ = network.evaluate(NET, params, tr.obs, tr.act)
    np.testing.assert_allclose(np.asarray(logp), tr.logp, atol=1e-4)
  # a large weight puts the first site choice on the site with the largest guide; a network without the flag
  # ignores the guide
  t = stack_transitions(res[0].transitions[:6], pretrain.SIZES)
  hot = _guided_params(nb_w=1e4)
  h, _ = network.encode(NET, hot, t.obs)
  sites = t.act.sites._replace(**{f: getattr(t.act.sites, f)[:, 0] for f in t.act.sites._fields})
  slogp, _ = network.site_scores(NET, hot, h, np.zeros(h.shape, np.float32), 0, sites)
  legal_guide = np.where(sites.mask, sites.guide, -np.inf)
  spread = np.sort(legal_guide, 1)[:, -1] - np.sort(legal_guide, 1)[:, -2]
  rows = spread > 1e-3   # a clear best site
  assert rows.any() and (np.argmax(np.asarray(slogp), 1)[rows] == np.argmax(legal_guide, 1)[rows]).all()
  plain = network.NetConfig()
  flat = network.init_params(plain, 0)
  zeroed = t.act._replace(sites=t.act.sites._replace(guide=np.zeros_like(t.act.sites.guide)))
  np.testing.assert_allclose(np.asarray(network.evaluate(plain, flat, t.obs, t.act)[0]),
                             np.asarray(network.evaluate(plain, flat, t.obs, zeroed)[0]), atol=1e-6)


def test_pretrain_and_fit_scorer_options_are_checked(tmp_path, capsys):
  with pytest.raises(ValueError, match="needs --neighbour-scorer"):
    pretrain.Config(neighbour_guide=5.0)
  with pytest.raises(ValueError, match="not with --init-from"):
    pretrain.Config(neighbour_scorer="x.npz", init_from="shipped")
  with pytest.raises(SystemExit) as e:
    fit_scorer.main(["--out", str(tmp_path / "s.npz"), "--datasets", "cora"])
  assert e.value.code != 0 and "held out" in capsys.readouterr().err
  out = str(tmp_path / "s.npz")
  assert fit_scorer.main(["--out", out, "--datasets", "", "--synthetic", "3", "--trials", "12", "--steps", "20",
                          "--valid-share", "0.4"]) == 0
  assert len(neighbours.load_scorer(out)) == 3
  trainer = pretrain.Pretrainer(pretrain.Config(out=str(tmp_path / "run"), data=("synthetic",), neighbour_scorer=out,
                                                neighbour_guide=50.0))
  assert trainer.net_cfg.neighbour_guide
  got = network.scorer_weights(trainer.net_cfg, np.asarray(trainer.params))
  assert all(np.array_equal(a, b) for la, lb in zip(got, neighbours.load_scorer(out)) for a, b in zip(la, lb))
  assert pretrain.kept_on_resume(pretrain.dataclasses.asdict(trainer.cfg))["--neighbour-scorer"] == out
