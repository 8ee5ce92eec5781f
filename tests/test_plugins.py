"""Plugins reach every trial worker, are recorded with the run, and a changed or missing one refuses to resume."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from arrl import main as arrl_main
from arrl import plugins, report
from arrl import tree as tree_lib
from arrl import nanochat_space as nanochat_space_lib
from arrl.agents import AGENTS, make_agent
from arrl.loop import EvalResult, LoopConfig, SearchLoop
from arrl.nanochat_space import nanochat_space, scoped_registries, to_program
from arrl.oracle import Oracle
from nanochat_jax import model as nc_model
from nanochat_jax.env import get_preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "plugin_example.py")
INITIAL = os.path.join(ROOT, "examples", "plugin_initial.json")


def last_error_line(capsys) -> str:
  return capsys.readouterr().err.strip().splitlines()[-1]


def test_example_plugin_trains_in_workers_and_a_changed_plugin_refuses_resume(tmp_path, fresh_registries, capsys):
  plugin = tmp_path / "plugin_example.py"
  shutil.copy(EXAMPLE, plugin)
  run_dir = tmp_path / "run"
  args = ["--preset", "tiny", "--budget-s", "2", "--noise-repeats", "1", "--confirm", "0", "--agent", "random",
          "--run-dir", str(run_dir)]   # --confirm 0: one ledger row per trial, so the counts below are exact
  proc = subprocess.run([sys.executable, "-m", "arrl.main", *args, "--plugin", str(plugin), "--initial", INITIAL,
                         "--max-experiments", "2"], cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  recs = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
  assert len(recs) == 2 and recs[0]["status"] == "baseline"
  assert all(r["run_status"] == "ok" and r["val_bpb"] > 0 for r in recs), [r.get("error") for r in recs]
  for r in recs:  # every trial trained the plugin's variants in its worker process
    cfg = to_program(tree_lib.from_json(r["program"])).model
    assert (cfg.mlp, cfg.norm) == ("silu", "dyt")
  assert "silu" not in nc_model.MLP_VARIANTS  # ... which this process never imported
  recorded = json.loads((run_dir / "plugins.json").read_text())
  assert [(p["spec"], p["module"]) for p in recorded] == [(str(plugin), "arrl_plugin_plugin_example")]

  assert arrl_main.main([*args, "--max-experiments", "3"]) == 2  # resumed without --plugin
  line = last_error_line(capsys)
  assert f"plugins.json: this run used plugin {plugin}, which is not loaded now" in line
  plugin.write_text(plugin.read_text() + "\n# edited after the run started\n")
  with scoped_registries():  # it imports (and registers) the edited plugin before it refuses it
    assert arrl_main.main([*args, "--plugin", str(plugin), "--max-experiments", "3"]) == 2
  line = last_error_line(capsys)
  assert line.startswith("error: ") and "plugin_example.py changed since the run started" in line

  assert arrl_main.main([*args, "--force", "--max-experiments", "3"]) == 2  # forced without it: its trees are foreign
  line = last_error_line(capsys)
  assert "trials.jsonl: trial 000000 program" in line and "unknown variant 'silu'" in line  # the loop validates
  assert json.loads((run_dir / "plugins.json").read_text()) == recorded  # a failed resume records nothing

  shutil.copy(EXAMPLE, plugin)
  script = tmp_path / "best.py"  # the run's program, exported, imports the run's plugins
  assert report.main([str(run_dir), "--out", str(tmp_path / "report"), "--export-best", str(script)]) == 0
  namespace = {"__name__": "exported"}
  exec(compile(script.read_text(), str(script), "exec"), namespace)
  assert namespace["PLUGINS"] == [str(plugin)] and namespace["PROGRAM"]["model"]["mlp"] == "silu"


def test_bad_initial_program_is_one_line_naming_the_file(tmp_path, capsys):
  bad = tmp_path / "initial.json"
  bad.write_text('{"model": {"mlp": "nope"}}')
  assert arrl_main.main(["--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--initial", str(bad)]) == 2
  line = last_error_line(capsys)
  assert line == f"error: --initial {bad}: model.mlp: unknown variant 'nope' of kind 'mlp'; known: relu2, swiglu, gelu"
  bad.write_text('{"model": {"depth": 2, "width": 3}}')
  assert arrl_main.main(["--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--initial", str(bad)]) == 2
  assert last_error_line(capsys) == f"error: --initial {bad}: unknown model field(s): width"


def test_a_missing_plugin_file_is_one_line(tmp_path, capsys):
  missing = tmp_path / "nope.py"
  assert arrl_main.main(["--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--plugin", str(missing)]) == 2
  assert last_error_line(capsys) == f"error: --plugin {missing}: no such file"


def test_worker_refuses_a_plugin_that_changed_since_the_loop_loaded_it(tmp_path, fresh_registries):
  plugin = tmp_path / "posenc_plugin.py"
  plugin.write_text("from arrl.nanochat_space import register_variant\n"
                    "register_variant('posenc', 'none', lambda x, cfg: x)\n")
  loaded = plugins.load(str(plugin))
  assert loaded.module == "arrl_plugin_posenc_plugin" and "none" in nc_model.POSENC_VARIANTS
  plugins.load_for_worker([{"spec": loaded.spec, "digest": loaded.digest}])
  with pytest.raises(plugins.PluginError, match="changed while the run was going"):
    plugins.load_for_worker([{"spec": loaded.spec, "digest": "0" * 16}])


def test_installed_packages_plugins_come_from_the_entry_point_group(tmp_path, monkeypatch, fresh_registries):
  dist = tmp_path / "arrl_fake_variants-1.2.dist-info"
  dist.mkdir()
  (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: arrl-fake-variants\nVersion: 1.2\n")
  (dist / "entry_points.txt").write_text("[arrl.plugins]\nfake = arrl_fake_variants\n")
  (dist / "top_level.txt").write_text("arrl_fake_variants\n")
  (tmp_path / "arrl_fake_variants.py").write_text(
      "from nanochat_jax.model import NORM_VARIANTS, rms_norm\nNORM_VARIANTS.register('rms2', rms_norm)\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  run_dir = tmp_path / "run"
  [plugin] = plugins.load_run_plugins([], str(run_dir))
  assert (plugin.spec, plugin.version) == ("arrl_fake_variants", "1.2") and "rms2" in nc_model.NORM_VARIANTS
  run_dir.mkdir()
  plugins.record(str(run_dir), [plugin])
  (run_dir / "state.json").write_text("{}")  # the run has started: the same plugins resume it
  assert plugins.load_run_plugins([], str(run_dir)) == [plugin]
  with pytest.raises(plugins.PluginError, match="this run did not use plugin"):
    plugins.load_run_plugins([EXAMPLE], str(run_dir))


class DigestScore:
  """A toy evaluator (no training): a program's score is a fixed function of its digest."""
  env_digest = "toy"

  def evaluate(self, tree, trial_id, context, replicate=0):
    return EvalResult(status="ok", score=1.0 + int(tree_lib.digest(tree)[:6], 16) / 2**26)


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_every_agent_proposes_the_plugins_variants_unprompted(tmp_path, fresh_registries, agent):
  # The agents need no change to use a new variant: each finds the example plugin's in a short search of the
  # nanochat space, started from the preset's program (relu2, rmsnorm). The preset's hyperparameter knobs are
  # switched off for it (unregistered inside the test's scope), so the first program has 19 legal edits (the
  # MLP and norm variants, the MLP width, the window pattern), 2 of them to a plugin variant, and a short
  # search suffices.
  plugins.load(EXAMPLE)
  for knob in list(nanochat_space_lib._KNOBS):
    nanochat_space_lib._KNOBS.unregister(knob)
  space = nanochat_space(get_preset("tiny"))
  assert sum(to_program(space.apply(space.default(), e)).model.mlp == "silu" or
             to_program(space.apply(space.default(), e)).model.norm == "dyt"
             for e in space.legal_edits(space.default())) == 2
  # Within 40 trials in at least one of three seeds: a policy (ppo's meta-trained network) may spend a given
  # seed's 40 trials elsewhere; an agent that cannot reach the variants fails every seed.
  tries, models = [], []
  plugin_variants = lambda: {"silu", "dyt"} & {v for m in models for v in (m.mlp, m.norm)}
  for seed in range(3):
    loop = SearchLoop(space, DigestScore(), make_agent(agent, seed=seed), str(tmp_path / str(seed)),
                      Oracle(max_experiments=40, patience=None), LoopConfig(noise_repeats=1, confirm=0, durable=False))
    models.clear()
    while loop.stop_reason() is None and not plugin_variants():
      models.append(to_program(loop.step().tree).model)
    tries.append(len(models))
    if plugin_variants():
      break
  assert plugin_variants(), f"{agent} proposed no plugin variant in 40 trials with seeds 0-2 ({tries} trials)"
  assert (models[0].mlp, models[0].norm) == ("relu2", "rmsnorm")   # the baseline: the preset's program
