"""Benchmarks: the NAS-Bench-Graph space is the table, regret/interval maths, LM ledgers, and a suite smoke run."""
import json
import os

import numpy as np
import pytest

from arrl.tree import Node
from benchmarks import lm, nas, report
from benchmarks.nasbench_graph import OP_FIELDS, NasBenchGraph, Record
from benchmarks.run import main
from benchmarks.stats import mean_ci, t975


@pytest.fixture(scope="module")
def cora():
  return NasBenchGraph("cora")


@pytest.mark.parametrize("dataset, size", [("cora", 26206), ("proteins", 2021)])
def test_space_is_exactly_the_table(dataset, size):
  bench = NasBenchGraph(dataset)
  assert len(bench.table) == size
  grammar, reached, rejected = bench.space.grammar, set(), []
  for params in bench.raw_architectures():
    ok = grammar.check_constraints(Node("params", "flat", params)) is None
    assert ok == (bench.key(params) in bench.table)  # the constraint admits a point iff the table holds it
    if ok:
      reached.add(bench.key(params))
    else:
      rejected.append(params)
  assert reached == set(bench.table)  # every architecture reachable
  assert len(rejected) == 9 and all({r[f] for f in OP_FIELDS} == {"skip"} for r in rejected)
  assert len(list(bench.raw_architectures())) == 9 * len(bench.ops) ** 4


def test_objective_reads_the_table(cora):
  default = cora.space.to_params(cora.space.default())
  assert cora.objective(default) == -cora.record(default).valid
  isomorphic = [{"link": "0000", **dict(zip(OP_FIELDS, ops))} for ops in (("gcn", "gat", "gat", "gat"),
                                                                           ("gat", "gat", "gcn", "gat"))]
  assert cora.record(isomorphic[0]) == cora.record(isomorphic[1])  # parallel branches commute
  with pytest.raises(ValueError, match="not in the cora table"):
    cora.record({"link": "0123", **{f: "skip" for f in OP_FIELDS}})
  with pytest.raises(ValueError, match="unknown NAS-Bench-Graph dataset"):
    NasBenchGraph("mnist")
  assert 0 < nas.best_valid_regret(cora) < 100 * (cora.best_test - min(r.test for r in cora.table.values()))


def test_regret_follows_the_best_validation_selection(cora):
  recs = [Record(0.5, 0.6, 0, 0), Record(0.7, 0.5, 0, 0), Record(0.6, 0.9, 0, 0), Record(0.8, 0.7, 0, 0)]
  test, valid = nas.regret_curves(cora, recs, 6)
  best, best_valid = 100 * cora.best_test, 100 * cora.best_valid
  np.testing.assert_allclose(test, [best - 60, best - 50, best - 50, best - 70, best - 70, best - 70])
  np.testing.assert_allclose(valid, best_valid - np.array([50, 70, 70, 80, 80, 80]))
  with pytest.raises(ValueError):
    nas.regret_curves(cora, [], 3)


def test_mean_ci_matches_the_t_interval():
  x = np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0]])
  mean, lo, hi = mean_ci(x)
  np.testing.assert_allclose(mean, [3.0, 0.0])
  np.testing.assert_allclose(hi - mean, [4.303 * 2 / np.sqrt(3), 0.0])
  np.testing.assert_allclose(mean - lo, hi - mean)
  assert abs(t975(1000) - 1.962) < 0.002 and t975(1) == 12.706
  with pytest.raises(ValueError):
    t975(0)


def _record(tid, status, val, curve_level, parent=None, kept=False, t0=0.0):
  curve = [[p, curve_level + 1.0 / p] for p in np.linspace(0.06, 1.0, 40)]
  return {"trial_id": tid, "status": status, "val_bpb": val, "parent": parent, "kept": kept, "sigma": 0.001,
          "cached": False, "loss_curve": curve, "training_seconds": 10.0, "total_seconds": 14.0,
          "started_at": t0, "finished_at": t0 + 14.0}


def test_ledger_summaries_overhead_and_replayed_aborts():
  base = _record("0", "baseline", 1.5, 3.0)
  worse = _record("1", "discard", 2.0, 5.0, parent="0", t0=15.0)     # far above the best's curve: abort
  better = _record("2", "keep", 1.4, 2.9, parent="0", kept=True, t0=30.0)
  assert lm.would_abort(worse, {"0": base}, lm.AbortPolicy()) == pytest.approx(0.3, abs=0.05)
  assert lm.would_abort(better, {"0": base}, lm.AbortPolicy()) is None
  assert lm.would_abort(base, {"0": base}, lm.AbortPolicy()) is None
  assert lm.would_abort({**worse, "status": "confirm"}, {"0": base}, lm.AbortPolicy()) is None  # never aborted live
  eff = lm.efficiency({"a-s0-noabort": [base, worse, better]}, budget_s=10.0)
  assert eff["overhead_share"]["mean"] == pytest.approx(0.4) and eff["loop_gap_s"]["median"] == pytest.approx(1.0)
  assert eff["replayed_abort_policy"]["would_abort"] == 1 and eff["replayed_abort_policy"]["would_abort_kept"] == 0
  aborted = {**worse, "status": "aborted", "val_bpb": None, "training_seconds": 3.0}
  assert lm.efficiency({"a-s0": [base, aborted]}, 10.0)["abort_saved_s"] == pytest.approx(7.0)
  best, wall = lm.best_so_far([base, worse, better])
  np.testing.assert_allclose(best, [1.5, 1.5, 1.4])
  np.testing.assert_allclose(wall, [14.0, 29.0, 44.0])
  s = lm.summarize([[base, worse, better], [base, better]], trials=3)
  assert s["runs"] == 2 and s["trials"] == 2 and s["final"] == [1.5, 1.4]


def test_lm_report_renders(tmp_path):
  runs = {"evolution-s0": [_record("0", "baseline", 1.5, 3.0), _record("1", "keep", 1.4, 2.9, "0", True, 15.0)]}
  res = {"preset": "tiny", "budget_s": 10.0, "trials": 2, "seeds": 1, "abort_check": False,
         "exit_codes": {"evolution-s0": 0}, "groups": {"evolution": lm.summarize(list(runs.values()), 2)},
         "efficiency": {"evolution": lm.efficiency(runs, 10.0), "all": lm.efficiency(runs, 10.0)}}
  text = "\n".join(report.lm_section(res))
  assert "| evolution | 1 | 2 | 1.4000" in text and "40.0%" in text and "--lm-abort-check" in text
  report.plot_lm(res, str(tmp_path / "t.png"), str(tmp_path / "w.png"))
  assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "w.png").stat().st_size > 0


def test_smoke_suite_writes_json_png_and_markdown(tmp_path):
  out = str(tmp_path / "res")
  assert main(["--suite", "smoke", "--out", out, "--agents", "random,greedy,evolution,tpe,uniform"]) == 0
  with open(os.path.join(out, "results.json")) as f:
    res = json.load(f)
  assert {"platform", "cpu", "cores", "python", "jax", "date"} <= set(res["machine"])
  cora = res["nas"]["cora"]["agents"]
  assert set(cora) == {"random", "greedy", "evolution", "tpe", "uniform"}
  for s in cora.values():
    assert len(s["runs"]) == 2 and len(s["mean"]) == 20 and s["at"]["20"]["lo"] <= s["at"]["20"]["mean"]
    assert all(min(r["regret"]) >= 0 and r["queries_run"] <= 20 for r in s["runs"])
  with open(os.path.join(out, "nas_cora.png"), "rb") as f:
    assert f.read(4) == b"\x89PNG"
  with open(os.path.join(out, "README.md")) as f:
    text = f.read()
  assert "| agent | 20 queries | valid regret @20 | s/run |" in text and "`ppo` was not benchmarked" in text
  assert "Skipped" in text


def test_bad_command_lines_fail_clearly(capsys):
  for argv, msg in ((["--agents", "nope"], "unknown agent"), (["--datasets", "mnist"], "unknown dataset"),
                    (["--nas-seeds", "0"], "--nas-seeds must be >= 1")):
    with pytest.raises(SystemExit):
      main(argv)
    assert msg in capsys.readouterr().err


def _summary(test: float, valid: float, half: float = 0.1) -> dict:
  return {"at": {"150": {"mean": test, "lo": test - half, "hi": test + half}},
          "final_valid": {"mean": valid, "lo": valid - half, "hi": valid + half}}


def test_verdict_reports_test_and_validation_regret_honestly():
  res = {"agents": {"ppo": _summary(2.0, 0.9), "random": _summary(2.5, 0.7), "greedy": _summary(3.0, 0.75)}}
  text = report.verdict(res)
  assert "On test regret at 150 queries, `ppo` beats the best baseline `random`: 2.00 vs 2.50" in text
  assert "(the 95% intervals do not overlap)" in text
  assert "On validation regret at 150 queries, `ppo` loses to the best baseline `random`: 0.90 vs 0.70" in text
  assert report.verdict({"agents": {"random": _summary(1.0, 1.0)}}) == (
    "`ppo` was not benchmarked (not among this run's agents).")


def test_ppo_ablation_writes_one_row_per_variant(tmp_path):
  from benchmarks import ppo_ablation
  assert ppo_ablation.main(["--seeds", "2", "--queries", "5", "--out", str(tmp_path)]) == 0
  with open(tmp_path / "ppo_ablation.json") as f:
    res = json.load(f)
  assert set(res["agents"]) == set(ppo_ablation.VARIANTS) and res["machine"]["cores"]
  for s in res["agents"].values():
    assert len(s["runs"]) == 2 and all(r["queries_run"] == 5 for r in s["runs"])
  text = (tmp_path / "ppo_ablation.md").read_text()
  assert all(f"| {name} |" in text for name in ppo_ablation.VARIANTS)


def test_held_out_synthetic_benchmark_scores_normalised_regret(tmp_path):
  from benchmarks import synthetic
  assert synthetic.main(["--tasks", "2", "--queries", "6", "--agents", "local,uniform", "--out", str(tmp_path)]) == 0
  res = json.loads((tmp_path / "synthetic.json").read_text())
  for s in res["agents"].values():
    assert len(s["curves"]) == 2 and all(0 <= x <= 2 and len(c) == 6 for c in s["curves"] for x in c)
    for i, c in enumerate(s["curves"]):  # the first query is the task's default program
      task = synthetic.synthetic(np.random.default_rng([synthetic.SEED_BASE, i]))
      assert c[0] == pytest.approx(task.regret(task.space.to_params(task.space.default())))
  assert "| local |" in (tmp_path / "synthetic.md").read_text()


def test_a_new_synthetic_batch_has_other_tasks_and_paired_differences(tmp_path):
  from benchmarks import synthetic
  first, second = synthetic.tasks(1, 3), synthetic.tasks(2, 3)
  assert first[0].optimum == synthetic.synthetic(np.random.default_rng([synthetic.SEED_BASE, 0])).optimum
  assert all(a.optimum != b.optimum for a in first for b in second)
  assert synthetic.main(["--tasks", "3", "--queries", "6", "--agents", "local,uniform", "--batch", "2",
                         "--paired", "uniform", "--out", str(tmp_path)]) == 0
  res = json.loads((tmp_path / "synthetic.json").read_text())
  d = np.mean(res["agents"]["local"]["curves"], axis=1) - np.mean(res["agents"]["uniform"]["curves"], axis=1)
  paired = res["agents"]["local"]["paired"]
  assert res["batch"] == 2 and paired["mean"] == pytest.approx(d.mean()) and paired["lower_on"] == int((d < 0).sum())
  assert paired["lo"] <= paired["mean"] <= paired["hi"]
  assert "local - uniform:" in (tmp_path / "synthetic.md").read_text()
  with pytest.raises(SystemExit):
    synthetic.main(["--agents", "local", "--paired", "tpe", "--out", str(tmp_path)])


def test_hash_shuffle_adds_a_relabelled_twin_of_each_network(tmp_path):
  from benchmarks import synthetic
  from arrl.ppo.checkpoint import PRETRAINED
  assert synthetic.main(["--tasks", "2", "--queries", "12", "--agents", "", "--init", f"net={PRETRAINED}",
                         "--hash-shuffle", "--paired", "net", "--out", str(tmp_path)]) == 0
  agents = json.loads((tmp_path / "synthetic.json").read_text())["agents"]
  assert set(agents) == {"net", "net+shuffled"} and agents["net+shuffled"]["paired"]["against"] == "net"
  assert agents["net"]["curves"] != agents["net+shuffled"]["curves"]   # the relabelling changes the choices


def test_the_nas_training_report_names_the_tables_each_network_was_meta_trained_on(tmp_path):
  from benchmarks import synthetic
  from arrl.ppo.checkpoint import PRETRAINED
  with open(os.path.join(PRETRAINED, "card.json")) as f:
    shipped = json.load(f)["nas_datasets"]
  assert "cs" in shipped   # the shipped network trained on cs (its card)
  assert synthetic.trained_tables("ppo", {}) == shipped == synthetic.trained_tables("ppo", {"init_from": PRETRAINED})
  assert synthetic.trained_tables("ppo", {"init_from": "none"}) == [] == synthetic.trained_tables("local", {})
  # a warm-start portfolio counts too: the shipped one was fitted on five training tables
  from arrl.portfolio import SHIPPED_PORTFOLIO, Portfolio
  portfolio = Portfolio.load(SHIPPED_PORTFOLIO).meta["datasets"]
  assert "physics" in portfolio and synthetic.trained_tables("local", {"warm_start": SHIPPED_PORTFOLIO}) == portfolio
  assert synthetic.main(["--nas-train", "cs", "--seeds", "1", "--queries", "3", "--agents", "ppo-scratch",
                         "--init", f"net={PRETRAINED}", "--out", str(tmp_path)]) == 0
  agents = json.loads((tmp_path / "nas_train.json").read_text())["agents"]
  assert agents["net"]["trained_on"] == shipped and agents["ppo-scratch"]["trained_on"] == []
  # an --init network runs alone: the portfolio beside the shipped one does not join it
  assert nas.init_variants([f"net={PRETRAINED}"], print) == {"net": {"init_from": PRETRAINED, "warm_start": "none"}}
  assert "Meta-trained on these tables (network or warm-start portfolio; model cards, portfolio files): net: cs." in (
      tmp_path / "nas_train.md").read_text()


def test_the_nas_training_benchmark_runs_agent_seeds_per_dataset_and_refuses_held_out_sets(tmp_path, capsys):
  from benchmarks import synthetic
  from arrl.ppo.tasks import HELD_OUT
  assert synthetic.main(["--nas-train", "cs,photo", "--seeds", "2", "--queries", "6", "--agents", "local,uniform",
                         "--batch", "2", "--paired", "uniform", "--out", str(tmp_path)]) == 0
  res = json.loads((tmp_path / "nas_train.json").read_text())
  base = synthetic.SEED_BASE + 1000
  assert res["runs"] == [{"dataset": d, "seed": base + k} for d in ("cs", "photo") for k in range(2)]
  for s in res["agents"].values():
    assert len(s["curves"]) == 4 and set(s["per_dataset"]) == {"cs", "photo"}
    task = synthetic.nas_task("photo")   # the first query is the table's default architecture
    assert s["curves"][2][0] == pytest.approx(task.regret(task.space.to_params(task.space.default())))
    assert s["per_dataset"]["photo"] == pytest.approx(np.mean(s["curves"][2:]))
  text = (tmp_path / "nas_train.md").read_text()
  assert "| local |" in text and "| cs | photo |" in text and "local - uniform:" in text
  assert "Meta-trained on these tables" not in text and all(s["trained_on"] == [] for s in res["agents"].values())
  for d in HELD_OUT:
    with pytest.raises(SystemExit):
      synthetic.main(["--nas-train", f"cs,{d}", "--out", str(tmp_path)])
    assert "held out" in capsys.readouterr().err
