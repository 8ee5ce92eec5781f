"""The warm-start portfolio: the greedy fit, legal programs per space, the wrapper agent, the fit's refusals."""
import json
import shutil

import numpy as np
import pytest

from arrl.agents import make_agent
from arrl.agents.base import SearchState
from arrl.agents.simple import RandomAgent
from arrl.agents.warm import WarmStarted
from arrl.portfolio import PORTFOLIO_FILE, Portfolio, greedy
from arrl.ppo.checkpoint import PRETRAINED
from arrl.space import Space


def test_greedy_takes_the_best_on_average_then_what_covers_the_rest():
  regrets = np.array([[0.0, 5.0, 1.0, 0.0],
                      [5.0, 0.0, 1.0, 5.0]])
  assert greedy(regrets, 1) == [2]          # mean 1: the best single program
  assert greedy(regrets, 3) == [2, 0, 1]    # then each task's own best; column 3 duplicates 0
  assert greedy(regrets, 10) == [2, 0, 1]   # nothing lowers the mean any more: it stops
  # a task that cannot run a program (nan) gains nothing from it
  assert greedy(np.array([[np.nan, 1.0], [0.5, 1.0]]), 1) == [1]
  for bad in (np.zeros((2, 0)), np.full((2, 3), np.nan)):
    with pytest.raises(ValueError, match="tasks, candidates"):
      greedy(bad, 1)


SPEC = {"a": {"choices": ["x", "y", "z"]}, "b": {"choices": [1, 2, 3, 4]}}


def test_trees_keeps_the_programs_legal_in_the_space(tmp_path):
  space = Space.from_dict(SPEC)
  pf = Portfolio(({"a": "z", "b": 4}, {"a": "w", "b": 1}, {"a": "y"}, {"a": "y", "b": 2, "c": 0}, {"a": "x", "b": 3}),
                 {"note": "test"})
  assert [space.to_params(t) for t in pf.trees(space)] == [{"a": "z", "b": 4}, {"a": "x", "b": 3}]
  assert pf.trees(Space.from_dict({"c": {"choices": [0, 1]}})) == []   # another space: nothing applies
  path = tmp_path / "pf.json"
  pf.save(str(path))
  assert Portfolio.load(str(path)) == pf
  path.write_text("{}")
  with pytest.raises(ValueError, match="not a portfolio file"):
    Portfolio.load(str(path))


def _state(space, history=(), in_flight=()):
  return SearchState(space=space, current=space.default(), best_score=1.0, sigma=0.01, history=list(history),
                     budget_used=0.0, in_flight=tuple(in_flight))


def test_warm_started_proposes_the_portfolio_first_then_its_agent():
  space = Space.from_dict(SPEC)
  default = space.to_params(space.default())                      # {"a": "x", "b": 1}: measured, so skipped
  pf = Portfolio(({"a": "z", "b": 4}, default, {"a": "y", "b": 3}, {"a": "z", "b": 2}), {})
  agent = WarmStarted(RandomAgent(seed=0), pf)
  assert agent.name == "random" and agent.entropy() is None
  first = agent.propose(_state(space))
  assert space.to_params(first.tree) == {"a": "z", "b": 4} and first.parent is None and first.info == {"warm_start": 0}
  saved = json.loads(json.dumps(agent.state_dict()))
  # a batch of three: the two portfolio programs left (the default is measured), then one of the agent's own
  batch = agent.propose_batch(_state(space, in_flight=[first.tree]), 3)
  assert [space.to_params(p.tree) for p in batch[:2]] == [{"a": "y", "b": 3}, {"a": "z", "b": 2}]
  assert batch[2].parent == space.default() and len(batch[2].edits) == 1
  assert len({p.tree for p in batch} | {first.tree}) == 4
  again = WarmStarted(RandomAgent(seed=5), pf)
  again.load_state_dict(saved)                                    # restored mid-portfolio: the same next proposals
  assert [p.tree for p in again.propose_batch(_state(space, in_flight=[first.tree]), 3)] == [p.tree for p in batch]
  # a state saved by the agent alone (a run begun without a portfolio) restores with the portfolio used up
  old = WarmStarted(RandomAgent(seed=0), pf)
  old.load_state_dict(RandomAgent(seed=0).state_dict())
  assert old.propose(_state(space)).info == {}


def test_make_agent_warm_start(tmp_path):
  space = Space.from_dict(SPEC)
  path = tmp_path / "pf.json"
  Portfolio(({"a": "y", "b": 2},), {}).save(str(path))
  agent = make_agent("greedy", seed=0, warm_start=str(path))
  assert isinstance(agent, WarmStarted) and space.to_params(agent.propose(_state(space)).tree) == {"a": "y", "b": 2}
  assert not isinstance(make_agent("greedy", seed=0), WarmStarted)
  # the ppo agent takes the portfolio beside the network it starts from, unless told not to
  ship = tmp_path / "ship"
  shutil.copytree(PRETRAINED, ship, ignore=shutil.ignore_patterns(PORTFOLIO_FILE))
  assert not isinstance(make_agent("ppo", seed=0, init_from=str(ship)), WarmStarted)
  shutil.copy(path, ship / PORTFOLIO_FILE)
  ppo = make_agent("ppo", seed=0, init_from=str(ship), update_every=0)
  assert isinstance(ppo, WarmStarted) and ppo.name == "ppo"
  assert space.to_params(ppo.propose(_state(space)).tree) == {"a": "y", "b": 2}
  assert ppo.inner.pending == {}                                  # the network did not propose it: not learned from
  assert not isinstance(make_agent("ppo", seed=0, init_from=str(ship), warm_start="none"), WarmStarted)
  assert not isinstance(make_agent("ppo", seed=0, init_from="none"), WarmStarted)   # from scratch: nothing learned
  with pytest.raises(ValueError, match="not a portfolio file"):
    make_agent("random", warm_start=str(tmp_path / "missing.json"))


def test_fit_portfolio_refuses_held_out_tables(capsys):
  from arrl import fit_portfolio
  for bad in ("cora", "cs,pubmed", "mnist", ""):
    with pytest.raises(SystemExit) as e:
      fit_portfolio.main(["--out", "x.json", "--datasets", bad])
    assert e.value.code == 2
  assert "held out" in capsys.readouterr().err


def test_fit_portfolio_ships_beside_a_network(tmp_path):
  from arrl import fit_portfolio
  from benchmarks.nasbench_graph import NasBenchGraph
  ship = tmp_path / "ship"
  shutil.copytree(PRETRAINED, ship, ignore=shutil.ignore_patterns(PORTFOLIO_FILE))
  card = json.loads((ship / "card.json").read_text())
  card.pop("portfolio", None)
  (ship / "card.json").write_text(json.dumps(card))
  assert fit_portfolio.main(["--ship-to", str(ship), "--datasets", "physics,photo", "--k", "2"]) == 0
  pf = Portfolio.load(str(ship / PORTFOLIO_FILE))
  entry = json.loads((ship / "card.json").read_text())["portfolio"]
  assert entry["datasets"] == ["physics", "photo"] and entry["programs"] == len(pf.programs) == 2
  assert "portfolio" in (ship / "MODEL_CARD.md").read_text() and card["params_sha256"] in (ship / "MODEL_CARD.md").read_text()
  # the first program is the best on average over the two tables (normalised regret: 0 at the best, 1 at the median)
  bench = {d: NasBenchGraph(d) for d in ("physics", "photo", "cora")}
  median = {d: np.median([r.valid for r in b.table.values()]) for d, b in bench.items()}
  norm = {d: {k: (b.best_valid - r.valid) / (b.best_valid - median[d]) for k, r in b.table.items()}
          for d, b in bench.items() if d != "cora"}
  best_mean = min((norm["physics"][k] + norm["photo"][k]) / 2 for k in norm["physics"])
  first = bench["physics"].key(pf.programs[0])
  assert (norm["physics"][first] + norm["photo"][first]) / 2 == pytest.approx(best_mean)
  assert sum(entry["regrets"][0].values()) / 2 == pytest.approx(best_mean, abs=1e-4)
  ppo = make_agent("ppo", seed=0, init_from=str(ship), update_every=0)
  space = bench["cora"].space
  assert [space.to_params(p.tree) for p in ppo.propose_batch(_state(space), 2)] == list(pf.programs)
  # shipping another network to that directory keeps the portfolio and its card entry
  from arrl.ppo.checkpoint import load_pretrained, save_pretrained, stored_net_config
  from arrl.ppo.network import NetConfig
  net_cfg = NetConfig(**stored_net_config(str(ship)))
  save_pretrained(str(ship), net_cfg, load_pretrained(str(ship), net_cfg), {"command": "another network"})
  assert json.loads((ship / "card.json").read_text())["portfolio"] == entry and (ship / PORTFOLIO_FILE).exists()


def test_search_with_a_hand_written_portfolio(tmp_path):
  from arrl.search import search
  path = tmp_path / "good.json"
  path.write_text(json.dumps({"programs": [{"a": "z", "b": 3}, {"a": "q", "b": 1}, {"a": "y", "b": 2}], "meta": {}}))
  res = search(SPEC, lambda p: float(p["b"]), agent="evolution", max_trials=6, seed=0,
               agent_kwargs={"warm_start": str(path)})
  # the loop's first program, then the portfolio's legal programs in order ("q" is not a value of a)
  assert [t.params for t in res.trials[:3]] == [{"a": "x", "b": 1}, {"a": "z", "b": 3}, {"a": "y", "b": 2}]
