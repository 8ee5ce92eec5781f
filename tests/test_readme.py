"""The README's "Extend the search space" example, run as written."""
import os
import re

from arrl.edits import SwapVariant
from arrl.nanochat_space import nanochat_space, to_program
from conftest import TINY_PRESET
from nanochat_jax import model as nc_model
from nanochat_jax.train import train

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def extend_example() -> str:
  text = open(README).read()
  section = text.split("## Extend the search space", 1)[1]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_commands_come_first():
  head = open(README).read().split("\n```bash\n", 1)[1].split("```", 1)[0].splitlines()
  assert "python -m arrl.main" in head[0] and "python -m pytest" in head[1]


def test_extend_example_registers_a_choosable_trainable_variant(tiny_data, fresh_mlp_registry):
  exec(compile(extend_example(), "README.md", "exec"), {})
  assert "relu" in nc_model.MLP_VARIANTS
  space = nanochat_space(TINY_PRESET)
  tree = space.default()
  assert SwapVariant("model.mlp", "relu") in space.legal_edits(tree)
  program = to_program(space.apply(tree, SwapVariant("model.mlp", "relu")))
  assert program.model.mlp == "relu"
  res = train(program, TINY_PRESET, tiny_data, budget_s=1.0, log=lambda s: None)
  assert res.status == "ok" and res.val_bpb > 0
