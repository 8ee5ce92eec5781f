"""Meta-training (`arrl.pretrain`): held-out data refused, vectorised episodes = the sequential agent, resume,
and the shipped pretrained network (loading, config mismatch, a space it never saw)."""
import dataclasses
import json
import os

import numpy as np
import pytest

import arrl.search
from arrl import pretrain
from arrl.ppo import PPOAgent, network, tasks
from arrl.ppo.agent import AgentConfig
from arrl.ppo.batch import hash_permutation
from arrl.ppo.checkpoint import PRETRAINED, load_pretrained, save_pretrained
from arrl.agents.base import SearchState
from arrl.ppo.features import STRUCTURAL, FeatureConfig, HistoryStats, Tally, hash_ids, shuffle_rows
from arrl.ppo.reward import RewardConfig


@pytest.mark.parametrize("dataset", tasks.HELD_OUT)
def test_held_out_datasets_are_refused(dataset, capsys):
  with pytest.raises(ValueError, match="held out"):
    tasks.nas_task(dataset)
  with pytest.raises(ValueError, match="held out"):
    pretrain.Config(datasets=("cs", dataset))
  with pytest.raises(SystemExit) as e:
    pretrain.main(["--datasets", dataset, "--out", "/nonexistent"])
  assert e.value.code != 0 and "held out" in capsys.readouterr().err
  with pytest.raises(ValueError, match="held out"):   # not even for validation
    pretrain.Config(eval_datasets=("arxiv", dataset))
  with pytest.raises(SystemExit) as e:
    pretrain.main(["--eval-datasets", f"cs,{dataset}", "--out", "/nonexistent"])
  assert e.value.code != 0 and "held out" in capsys.readouterr().err


def test_synthetic_tasks_vary_and_their_default_is_feasible():
  rng = np.random.default_rng(0)
  drawn = [tasks.synthetic(rng) for _ in range(12)]
  assert len({len(t.space.default().fields) for t in drawn}) > 3
  for t in drawn:
    params = t.space.to_params(t.space.default())
    assert np.isfinite(t.objective(params)) and 0 <= t.regret(params) <= 2


def _sequential(task, seed, trials):
  res = arrl.search.search(task.space, task.objective, agent="ppo", max_trials=trials, seed=seed, noise_repeats=1,
                           false_keep=0.5, agent_kwargs={"init_from": "none", "update_every": 0})
  return [(t.params, t.score, t.status) for t in res.trials]


def test_a_vectorised_episode_makes_the_trials_of_the_sequential_agent():
  net, cfg = network.NetConfig(), AgentConfig()
  feat = FeatureConfig(buckets=net.buckets, history=cfg.history, max_edits=net.max_edits)
  rng = np.random.default_rng(5)
  batch = [tasks.synthetic(rng) for _ in range(3)]
  seed, trials = 2, 30
  params = network.init_params(net, seed, cfg.stop_bias, cfg.prior)
  res = pretrain.run_episodes(net, feat, params, batch, trials, [np.random.default_rng(seed) for _ in batch])
  for task, r in zip(batch, res):
    vec = [(task.space.to_params(o.tree), o.score, o.status) for o in r.episode.history]
    seq = _sequential(task, seed, trials)
    assert seq[1:] == vec  # seq[0] is the loop's baseline trial of the default program
    assert len(r.transitions) == len(r.rewards) == len(vec)


def test_table_init_scales_only_the_hashed_string_rows_of_a_fresh_network(tmp_path, capsys):
  net = network.NetConfig()
  base, zero = network.init_params(net, 3), network.init_params(net, 3, table_scale=0.0)
  differ = np.flatnonzero(base != zero)
  assert len(differ) == net.buckets * net.d_model and not zero[differ].any()   # the table, now all zeros
  trainer = pretrain.Pretrainer(pretrain.Config(out=str(tmp_path / "run"), table_init=0.0, data=("synthetic",)))
  np.testing.assert_array_equal(np.asarray(trainer.params), network.init_params(net, 0, AgentConfig().stop_bias,
                                                                                AgentConfig().prior, 0.0))
  with pytest.raises(SystemExit) as e:
    pretrain.main(["--table-init", "-1", "--out", str(tmp_path / "bad")])
  assert e.value.code != 0 and "--table-init must be >= 0" in capsys.readouterr().err
  with pytest.raises(ValueError, match="not with --init-from"):
    pretrain.Config(table_init=0.0, init_from="shipped")


def test_a_hash_permutation_keeps_the_empty_row_is_a_bijection_and_differs_between_episodes():
  perms = [hash_permutation(np.random.default_rng([4, e]), 64) for e in range(3)]
  for p in perms:
    assert p[0] == 0 and sorted(p) == list(range(64))
  assert not np.array_equal(perms[0], perms[1]) and not np.array_equal(perms[1], perms[2])
  np.testing.assert_array_equal(perms[0], hash_permutation(np.random.default_rng([4, 0]), 64))
  fixed = frozenset({3, 17, 40})
  p = hash_permutation(np.random.default_rng(4), 64, fixed)
  assert sorted(p) == list(range(64)) and all(p[r] == r for r in (0, *fixed))
  assert sum(p[r] != r for r in range(64)) > 50   # the others move


def test_a_search_shuffle_keeps_the_rows_of_the_strings_every_space_shares():
  """status:keep means the same in every space, a field or value of one space does not: only the latter move."""
  buckets = 2048
  perm = shuffle_rows(np.random.default_rng(0), buckets)
  assert {"status:keep", "status:crash", "op:set", "<stop>", "<global>"} <= set(STRUCTURAL)
  for s in STRUCTURAL:
    assert all(perm[r] == r for r in hash_ids(s, buckets))
  rows = [hash_ids(s, buckets)[0] for s in ("set:model.depth", "model.depth=4", "'gcn'", "lr")]
  moved = [r for r in rows if perm[r] != r]
  assert len(moved) >= 3   # a space's strings move (a row may map to itself by chance: 1 in ~2000)


def test_a_shuffled_episode_relabels_what_the_network_sees_and_is_the_sequential_shuffled_agents_run():
  net, cfg = network.NetConfig(), AgentConfig()
  feat = FeatureConfig(buckets=net.buckets, history=cfg.history, max_edits=net.max_edits)
  task, trials = tasks.synthetic(np.random.default_rng(5)), 20
  params = network.init_params(net, 2, cfg.stop_bias, cfg.prior)
  run = lambda shuffle, seed: pretrain.run_episodes(net, feat, params, [task], trials, [np.random.default_rng(seed)],
                                                     shuffle)[0]
  plain, shuffled, again = run(False, 2), run(True, 2), run(True, 2)
  trials_of = lambda r: [(task.space.to_params(o.tree), o.score) for o in r.episode.history]
  assert trials_of(shuffled) == trials_of(again)   # same seed -> same run
  perm = shuffle_rows(np.random.default_rng(2), net.buckets)   # the episode's: drawn first from its RNG
  first = shuffled.transitions[0].obs             # the default program: the same observation in both runs
  np.testing.assert_array_equal(first.ids, perm[plain.transitions[0].obs.ids])
  assert trials_of(plain) != trials_of(shuffled)
  res = arrl.search.search(task.space, task.objective, agent="ppo", max_trials=trials, seed=2, noise_repeats=1,
                           false_keep=0.5, agent_kwargs={"init_from": "none", "update_every": 0, "hash_shuffle": True})
  assert [(t.params, t.score) for t in res.trials][1:] == trials_of(shuffled)


def test_an_episode_returns_its_first_regret_minus_its_mean_regret_and_rewards_only_gains():
  """The shaped reward: the undiscounted return is the area objective (up to the first regret, which no action
  changes), and a step earns only what it changed, so the critic never has to guess the current regret."""
  net, cfg = network.NetConfig(), AgentConfig()
  feat = FeatureConfig(buckets=net.buckets, history=cfg.history, max_edits=net.max_edits)
  rng = np.random.default_rng(8)
  batch, trials = [tasks.synthetic(rng) for _ in range(3)], 30
  params = network.init_params(net, 0, cfg.stop_bias, cfg.prior)
  for r in pretrain.run_episodes(net, feat, params, batch, trials, [np.random.default_rng(1) for _ in batch]):
    regrets = r.episode.regrets
    curve = (regrets + [regrets[-1]] * trials)[:trials]
    assert sum(r.rewards) == pytest.approx(regrets[0] - np.mean(curve))
    assert any(x > 0 for x in r.rewards)
    changed = [o.kept for o in r.episode.history]
    assert all(x == 0 for x, k in zip(r.rewards, changed) if not k)


def test_history_statistics_kept_up_to_date_step_by_step_equal_the_ones_read_from_the_whole_history():
  net, cfg = network.NetConfig(), AgentConfig()
  feat = FeatureConfig(buckets=net.buckets, history=cfg.history, max_edits=net.max_edits)
  task = tasks.synthetic(np.random.default_rng(11))
  params = network.init_params(net, 0, cfg.stop_bias, cfg.prior)
  hist = pretrain.run_episodes(net, feat, params, [task], 25, [np.random.default_rng(0)])[0].episode.history
  assert {o.status for o in hist} >= {"keep", "discard"}
  tally, reward_cfg = Tally(), RewardConfig()
  for k in range(1, len(hist) + 1):
    best = min((o for o in hist[:k] if o.score is not None), key=lambda o: o.score)
    state = SearchState(space=task.space, current=best.tree, best_score=best.score, sigma=0.01, history=hist[:k],
                        budget_used=k / 25)
    kept, whole = HistoryStats.of(state, reward_cfg, tally=tally), HistoryStats.of(state, reward_cfg)
    assert vars(kept) == vars(whole) and tally.seen == k
  with pytest.raises(ValueError, match="cannot follow"):
    HistoryStats.of(dataclasses.replace(state, history=hist[:3]), reward_cfg, tally=tally)


def test_pretraining_resumes_where_it_stopped(tmp_path):
  args = ["--envs", "2", "--trials", "12", "--eval-tasks", "2", "--data", "synthetic", "--seed", "3", "--workers", "1"]
  pretrain.main(["--out", str(tmp_path / "a"), "--iterations", "2", *args])
  pretrain.main(["--out", str(tmp_path / "b"), "--iterations", "1", *args])
  pretrain.main(["--out", str(tmp_path / "b"), "--iterations", "2", *args])  # as after a kill: picks up at 1
  a, b = (pretrain.Pretrainer(pretrain.Config(out=str(tmp_path / d), iterations=2, envs=2, trials=12, eval_tasks=2,
                                              data=("synthetic",), seed=3)) for d in "ab")
  assert a.progress["iteration"] == b.progress["iteration"] == 2
  np.testing.assert_allclose(np.asarray(a.params), np.asarray(b.params), rtol=1e-5, atol=1e-6)
  assert len(b.progress["log"]) == 2 and (tmp_path / "b" / "learning_curve.png").exists()


def test_the_shipped_network_is_the_default_and_a_mismatched_config_is_one_clear_error(tmp_path):
  shipped = load_pretrained(PRETRAINED, network.NetConfig())
  np.testing.assert_array_equal(np.asarray(PPOAgent(seed=0).params), shipped)
  assert not np.array_equal(np.asarray(PPOAgent(seed=0, init_from="none").params), shipped)
  with pytest.raises(ValueError, match="another config.*d_model=64 here 32.*--agent-init none"):
    PPOAgent(seed=0, d_model=32)
  save_pretrained(str(tmp_path), network.NetConfig(d_model=32), np.zeros(3), {"command": "test"})
  with pytest.raises(ValueError, match="another config"):
    load_pretrained(str(tmp_path), network.NetConfig())
  with pytest.raises(ValueError, match="no pretrained PPO network"):
    load_pretrained(str(tmp_path / "missing"), network.NetConfig())


def test_the_pretrained_agent_runs_on_a_space_it_never_saw_and_is_reproducible():
  space = {"warmup": {"choices": [0, 50, 100, 200, 400], "ordinal": True},
           "opt": {"choices": ["lion", "sgd", "adam"]}, "dropout": {"choices": [0.0, 0.1, 0.3], "ordinal": True},
           "norm": {"choices": ["pre", "post", "none", "sandwich"]}}

  def loss(p):
    return abs(p["warmup"] - 100) / 100 + {"lion": 0.2, "sgd": 0.5, "adam": 0.0}[p["opt"]] + p["dropout"] + (
        0.3 if p["norm"] == "post" else 0.0)

  a = arrl.search.search(space, loss, agent="ppo", max_trials=25, seed=4)
  b = arrl.search.search(space, loss, agent="ppo", max_trials=25, seed=4)
  assert [t.params for t in a.trials] == [t.params for t in b.trials]
  assert sum(not t.cached for t in a.trials) == 25 and a.best.score < loss(a.trials[0].params)


def test_an_episode_on_an_exhausted_space_ends():
  space = {"a": {"choices": [0, 1]}, "b": {"choices": [0, 1, 2]}}
  loss = lambda p: float(p["a"] + p["b"])
  task = tasks.Task("tiny", arrl.search.as_space(space), loss, loss, 0.0, 1.0, size=6)
  net, cfg = network.NetConfig(), AgentConfig()
  feat = FeatureConfig(buckets=net.buckets, history=cfg.history, max_edits=net.max_edits)
  params = network.init_params(net, 0, cfg.stop_bias, cfg.prior)
  (r,) = pretrain.run_episodes(net, feat, params, [task], 50, [np.random.default_rng(0)])
  assert r.episode.executed == 6 and r.episode.regrets[-1] == 0.0


def _parent(directory, card: dict, net_cfg: network.NetConfig = network.NetConfig(), seed: int = 7) -> np.ndarray:
  params = network.init_params(net_cfg, seed, AgentConfig().stop_bias, AgentConfig().prior)
  save_pretrained(str(directory), net_cfg, params, card)
  return params


def test_init_from_starts_a_fresh_run_from_the_parent_and_a_resumed_run_keeps_its_own_state(tmp_path):
  cfg = dict(envs=2, trials=12, eval_tasks=2, data=("synthetic",), seed=3)
  parent = _parent(tmp_path / "p", {"iterations": 5, "simulated_trials": 400})
  fresh = pretrain.Pretrainer(pretrain.Config(out=str(tmp_path / "r"), iterations=1, init_from=str(tmp_path / "p"), **cfg))
  np.testing.assert_array_equal(np.asarray(fresh.params), parent)
  assert fresh.progress["parent"]["iterations"] == 5
  fresh.run()
  trained = np.asarray(fresh.params)
  assert not np.array_equal(trained, parent)
  _parent(tmp_path / "q", {"iterations": 9, "simulated_trials": 900}, seed=8)
  resumed = pretrain.Pretrainer(pretrain.Config(out=str(tmp_path / "r"), iterations=2, init_from=str(tmp_path / "q"),
                                                **cfg))
  np.testing.assert_array_equal(np.asarray(resumed.params), trained)
  assert resumed.progress["config"]["init_from"] == str(tmp_path / "p")
  assert resumed.progress["parent"]["lineage_iterations"] == 5


def test_init_from_a_network_of_another_config_is_one_error_naming_the_file(tmp_path, capsys):
  _parent(tmp_path / "p", {"iterations": 1, "simulated_trials": 10}, network.NetConfig(d_model=32))
  code = pretrain.main(["--out", str(tmp_path / "r"), "--init-from", str(tmp_path / "p"), "--data", "synthetic"])
  err = capsys.readouterr().err.strip()
  assert code != 0 and len(err.splitlines()) == 1
  assert str(tmp_path / "p" / "params.npz") in err and "d_model=32 here 64" in err and "without --init-from" in err
  assert not (tmp_path / "r").exists()
  _parent(tmp_path / "nocard", {"iterations": 1, "simulated_trials": 10})
  os.remove(tmp_path / "nocard" / "card.json")
  code = pretrain.main(["--out", str(tmp_path / "r"), "--init-from", str(tmp_path / "nocard"), "--data", "synthetic"])
  err = capsys.readouterr().err.strip()
  assert code != 0 and len(err.splitlines()) == 1 and f"{tmp_path / 'nocard' / 'card.json'}: missing" in err
  assert not (tmp_path / "r").exists()


def test_a_shipped_continuation_records_its_parent_and_the_lineage(tmp_path):
  args = ["--envs", "2", "--trials", "12", "--eval-tasks", "2", "--data", "synthetic", "--iterations", "1", "--workers",
          "1"]
  pretrain.main(["--out", str(tmp_path / "a"), "--ship-to", str(tmp_path / "A"), *args])
  pretrain.main(["--out", str(tmp_path / "b"), "--init-from", str(tmp_path / "A"), "--ship-to", str(tmp_path / "B"),
                 *args])
  a, b = (json.loads((tmp_path / d / "card.json").read_text()) for d in "AB")
  assert a["parent"] is None and a["lineage_iterations"] == 1 and a["lineage_simulated_trials"] == a["simulated_trials"]
  assert b["parent"]["params_sha256"] == a["params_sha256"] and b["parent"]["iterations"] == 1
  assert b["lineage_iterations"] == 2
  assert b["lineage_simulated_trials"] == a["simulated_trials"] + b["simulated_trials"]


def test_nas_validation_is_recorded_apart_and_the_best_combined_point_is_kept_and_shipped(tmp_path, capsys):
  out, ship = tmp_path / "r", tmp_path / "S"
  args = ["--out", str(out), "--envs", "2", "--trials", "12", "--eval-tasks", "2", "--eval-nas", "1", "--eval-every",
          "1", "--data", "synthetic,nas", "--datasets", "cs,photo", "--iterations", "2", "--seed", "3", "--workers", "1"]
  assert pretrain.main([*args, "--ship-to", str(ship), "--ship-best"]) == 0
  trainer = pretrain.Pretrainer(pretrain.parse_args(args)[0])  # resumed: nothing left to train
  curve, best = trainer.progress["curve"], trainer.progress["best"]
  assert [c["iteration"] for c in curve] == [0, 1, 2]
  for c in curve:
    assert set(c["nas"]["per_dataset"]) == {"cs", "photo"}
    assert c["combined"] == pytest.approx((c["mean_regret"] + c["nas"]["mean_regret"]) / 2)
  assert best["combined"] == min(c["combined"] for c in curve)
  trainer.params = trainer.best_params()   # the kept parameters score what their point recorded
  assert trainer.validate()["combined"] == pytest.approx(best["combined"])
  card = json.loads((ship / "card.json").read_text())
  assert card["iterations"] == best["iteration"] and card["validation"]["combined"] == best["combined"]
  np.testing.assert_array_equal(load_pretrained(str(ship), trainer.net_cfg), trainer.best_params())
  np.savez(out / "best.npz", params=trainer.best_params(), iteration=best["iteration"] + 7)  # a kill between writes
  assert pretrain.main([*args, "--ship-to", str(tmp_path / "T"), "--ship-best"]) == 2
  assert "best.npz: holds iteration" in capsys.readouterr().err and not (tmp_path / "T").exists()
  with pytest.raises(ValueError, match="--eval-nas 1"):
    pretrain.Pretrainer(pretrain.parse_args([*args, "--eval-nas", "2"])[0])


def test_validation_on_other_training_datasets_and_a_hash_shuffled_run_that_resumes_only_as_such(tmp_path, capsys):
  args = ["--out", str(tmp_path / "r"), "--envs", "2", "--trials", "12", "--eval-tasks", "2", "--eval-nas", "1",
          "--data", "synthetic,nas", "--nas-share", "1", "--datasets", "cs", "--eval-datasets", "photo,arxiv",
          "--iterations", "1", "--hash-shuffle", "--seed", "3", "--workers", "1"]
  assert pretrain.main([*args, "--ship-to", str(tmp_path / "S")]) == 0
  capsys.readouterr()
  trainer = pretrain.Pretrainer(pretrain.parse_args(args)[0])
  assert all(set(c["nas"]["per_dataset"]) == {"photo", "arxiv"} for c in trainer.progress["curve"])
  assert {t.name for t in trainer.tasks(np.random.default_rng(0), 6)} == {trainer.nas("cs").name}
  card = json.loads((tmp_path / "S" / "card.json").read_text())
  assert card["hash_shuffle"] and card["nas_validation_datasets"] == ["photo", "arxiv"] and card["nas_datasets"] == ["cs"]
  assert card["table_init"] == 1.0
  for other in ([a for a in args if a != "--hash-shuffle"], [*args[:17], "photo", *args[18:]], [*args, "--table-init", "0"]):
    assert pretrain.main(other) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(tmp_path / "r") in err


def test_without_nas_data_validation_is_synthetic_only(tmp_path):
  trainer = pretrain.Pretrainer(pretrain.Config(out=str(tmp_path / "r"), envs=2, trials=12, eval_tasks=2,
                                                data=("synthetic",), eval_nas=3))
  point = trainer.validate()
  assert "nas" not in point and point["combined"] == point["mean_regret"] and len(trainer._val) == 2
