"""The README's "Extend the search space" example, run as written."""
import os
import re
import subprocess
import sys

from arrl import plugins
from arrl.edits import SetField, SwapVariant
from arrl.nanochat_space import nanochat_space, to_program
from conftest import TINY_PRESET
from nanochat_jax.train import train

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def extend_example() -> str:
  text = open(README).read()
  section = text.split("## Extend the search space", 1)[1]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_commands_come_first():
  head = open(README).read().split("\n```bash\n", 1)[1].split("```", 1)[0].splitlines()
  assert "python -m arrl.main" in head[0] and "python -m pytest" in head[1]


def test_readme_test_command_prints_the_summary_line():
  """The project's pytest options keep pytest's "N passed" line, even with a -q added (the stricter case)."""
  head = open(README).read().split("\n```bash\n", 1)[1].split("```", 1)[0].splitlines()
  args = head[1].split("python -m pytest", 1)[1].split("#", 1)[0].split()
  one_test = "tests/test_display.py::test_non_terminal_output_is_the_periodic_lines_and_the_trial_line_only"
  out = subprocess.run([sys.executable, "-m", "pytest", *args, "-q", one_test], capture_output=True, text=True,
                       cwd=os.path.dirname(README), timeout=300).stdout
  assert re.search(r"^1 passed in ", out, re.M), out[-2000:]


def test_extend_example_is_a_plugin_whose_variants_are_choosable_and_train(tmp_path, tiny_data, fresh_registries):
  plugin = tmp_path / "my_plugin.py"
  plugin.write_text(extend_example())
  plugins.load(str(plugin))
  space = nanochat_space(TINY_PRESET)
  tree = space.default()
  edits = [SwapVariant("model.mlp", "relu"), SwapVariant("model.posenc", "none"), SetField("optim.adam_eps", 1e-8)]
  assert all(e in space.legal_edits(tree) for e in edits)
  for e in edits:
    tree = space.apply(tree, e)
  program = to_program(tree)
  assert (program.model.mlp, program.model.posenc, program.optim.adam_eps) == ("relu", "none", 1e-8)
  res = train(program, TINY_PRESET, tiny_data, budget_s=1.0, log=lambda s: None)
  assert res.status == "ok" and res.val_bpb > 0
