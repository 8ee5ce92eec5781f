"""The nanochat space: default == preset program, constraints, caps, extension by registration, export."""
import dataclasses
import functools
import time

import jax
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings, strategies as st

from arrl.edits import IllegalEdit, ListDelete, ListInsert, ListReplace, SetField, SwapVariant
from arrl.grammar import Choice
from arrl.nanochat_space import (estimate_memory_gb, estimate_params, export_script, from_program, nanochat_space,
                                 register_knob, register_mlp_variant, to_program)
from arrl.tree import digest, get_path
from nanochat_jax import model as nc_model
from nanochat_jax.config import Program
from nanochat_jax.env import PRESETS


@functools.lru_cache(maxsize=None)
def _space(name: str):
  return nanochat_space(name)


@pytest.mark.parametrize("name", ["gpu", "cpu"])
def test_default_tree_is_the_preset_program(name):
  space, program = _space(name), PRESETS[name].program
  t = space.default()
  assert to_program(t) == program
  assert from_program(program) == t
  assert to_program(from_program(program)).to_json() == program.to_json()
  space.validate(t)
  assert nanochat_space(PRESETS[name]).default() == t  # a Preset works as well as its name


def test_grids_are_ladders_around_the_preset_default():
  g = _space("gpu").grammar
  lr = g.fields("optim", "default")["matrix_lr"]
  assert lr.default == 0.04 and 0.04 in lr.values and len(lr.values) == 9 and lr.ordinal
  assert list(lr.values) == sorted(lr.values) and lr.values[0] == 0.01 and lr.values[-1] == 0.16
  depth = g.fields("model", "default")["depth"]
  assert depth.values == (4, 5, 6, 7, 8, 10, 11, 13, 16)
  assert g.fields("model", "default")["vocab_size"].values == (8192,)  # not searchable: fixed by the preset
  cpu = _space("cpu").grammar.fields("model", "default")
  assert cpu["depth"].default == 4 and cpu["head_dim"].values == (32, 64, 128)
  assert set(g.variants("mlp")) >= {"relu2", "swiglu", "gelu"} and set(g.variants("norm")) == set(
      nc_model.NORM_VARIANTS)


def test_edits_compile_into_the_program():
  space = _space("gpu")
  t = space.default()
  t = space.apply(t, SetField("optim.matrix_lr", 0.0566))
  t = space.apply(t, SwapVariant("model.mlp", "swiglu"))
  t = space.apply(t, ListDelete("model.window_pattern", 0))
  t = space.apply(t, SwapVariant("model.norm", "layernorm"))
  t = space.apply(t, SetField("schedule.device_batch_size", 64))
  p = to_program(t)
  expected = PRESETS["gpu"].program
  expected = expected.replace(
      model=dataclasses.replace(expected.model, mlp="swiglu", mlp_mult=2.75, window_pattern="SSL", norm="layernorm"),
      optim=dataclasses.replace(expected.optim, matrix_lr=0.0566),
      schedule=dataclasses.replace(expected.schedule, device_batch_size=64))
  assert p == expected
  assert from_program(p) == t
  t2 = space.apply(t, ListInsert("model.window_pattern", 3, "S"))
  t2 = space.apply(t2, ListReplace("model.window_pattern", 0, "L"))
  assert to_program(t2).model.window_pattern == "LSLS"


@pytest.mark.parametrize("edit, match", [
    (SetField("optim.matrix_lr", 0.07), r"^optim.matrix_lr=0.07 is not legal; legal: 0.01, 0.0141, 0.02, "),
    (SetField("model.n_kv_head", 8), r"n_kv_head=8 must divide n_head=4"),
    (SetField("schedule.total_batch_tokens", 131072), r"total_batch_tokens=131072 must be a multiple of"),
    (SetField("model.depth", 16), r"estimated training memory .* GB exceeds the preset's cap of 70 GB"),
    (SetField("model.vocab_size", 4096), r"model.vocab_size=4096 is not legal; legal: 8192"),
    (SwapVariant("model.mlp", "mlp9"), r"unknown variant 'mlp9' of kind 'mlp'"),
    (SetField("model.mlp.mult", 2.75), r"model.mlp.mult=2.75 is not legal"),  # swiglu's width, not relu2's
])
def test_illegal_edits_fail_clearly(edit, match):
  with pytest.raises(IllegalEdit, match=match):
    _space("gpu").apply(_space("gpu").default(), edit)


def test_caps_come_from_the_preset():
  space = _space("gpu")
  t = space.apply(space.default(), SetField("schedule.device_batch_size", 16))
  t = space.apply(t, SetField("model.depth", 16))  # legal once the micro-batch is small enough
  with pytest.raises(IllegalEdit, match=r"estimated 973.1M parameters exceed the preset's cap of 400.0M"):
    space.apply(t, SetField("model.aspect_ratio", 128))
  p = to_program(t)
  assert estimate_params(p.model) <= PRESETS["gpu"].max_params
  assert estimate_memory_gb(p) <= PRESETS["gpu"].max_memory_gb
  small = dataclasses.replace(PRESETS["cpu"], max_params=4_000_000)
  with pytest.raises(ValueError, match=r"estimated 5.0M parameters exceed the preset's cap of 4.0M"):
    nanochat_space(small)


@pytest.mark.parametrize("changes", [
    {},
    {"mlp": "swiglu", "mlp_mult": 2.75, "n_kv_head": 1, "ve_pattern": "all"},
    {"mlp": "gelu", "depth": 3, "head_dim": 32, "ve_pattern": "none", "n_kv_head": 3},
])
def test_param_estimate_is_exact_for_builtin_mlps(changes):
  cfg = dataclasses.replace(PRESETS["cpu"].program.model, **changes)
  model = nnx.eval_shape(lambda: nc_model.GPT(cfg, rngs=nnx.Rngs(0)))
  assert estimate_params(cfg) == nc_model.num_params(model)


def test_memory_estimate_scales_with_the_micro_batch():
  p = PRESETS["gpu"].program
  half = p.replace(schedule=dataclasses.replace(p.schedule, device_batch_size=64))
  assert 40 < estimate_memory_gb(p) < 70 and estimate_memory_gb(half) < 0.6 * estimate_memory_gb(p)


@pytest.mark.parametrize("name", ["gpu", "cpu"])
def test_random_edit_sequences_stay_valid(name):
  space = _space(name)

  @settings(max_examples=12, deadline=None)
  @given(st.lists(st.integers(0, 10**6), min_size=1, max_size=5))
  def run(picks):
    t = space.default()
    for pick in picks:
      legal = space.legal_edits(t)
      t = space.apply(t, legal[pick % len(legal)])
      space.validate(t)
      to_program(t).validate()
      assert from_program(to_program(t)) == t

  run()


def test_long_random_walk_stays_valid():
  space = _space("gpu")
  rng = np.random.default_rng(3)
  t = space.default()
  for _ in range(25):
    legal = space.legal_edits(t)
    t = space.apply(t, legal[rng.integers(len(legal))])
  space.validate(t)
  to_program(t).validate()
  assert t != space.default()


def test_legal_actions_match_legal_edits_and_timing():
  space = _space("gpu")
  t = space.default()
  legal = space.legal_edits(t)
  actions = space.legal_actions(t)
  assert sum(map(len, actions.values())) == len(legal) > 100
  assert SetField("model.depth", 10) not in legal  # over the memory cap at device_batch_size 128
  assert SetField("model.depth", 7) in legal and SwapVariant("model.mlp", "swiglu") in legal
  start = time.perf_counter()
  for _ in range(5):
    space.legal_edits(t)
  per_call = (time.perf_counter() - start) / 5
  assert per_call < 0.25, f"legal_edits took {per_call * 1e3:.0f} ms (target < 50 ms on one free core)"


def test_sample_gives_valid_varied_programs():
  space = _space("gpu")
  rng = np.random.default_rng(0)
  trees = [space.sample(rng) for _ in range(15)]
  for t in trees:
    space.validate(t)
    to_program(t).validate()
  assert len({digest(t) for t in trees}) == 15
  assert len({get_path(t, "model.mlp").variant for t in trees}) >= 2


def test_off_grid_program_is_rejected_by_the_space():
  p = PRESETS["gpu"].program
  off = p.replace(optim=dataclasses.replace(p.optim, matrix_lr=0.037))
  with pytest.raises(ValueError, match=r"optim.matrix_lr=0.037 is not legal"):
    _space("gpu").validate(from_program(off))


def test_export_script_compiles_and_embeds_the_program():
  space = _space("cpu")
  t = space.apply(space.default(), SwapVariant("model.mlp", "gelu"))
  script = export_script(t, "cpu")
  code = compile(script, "exported.py", "exec")
  namespace = {"__name__": "exported"}
  exec(code, namespace)  # defines PRESET/PROGRAM/main without running training
  assert Program.from_dict(namespace["PROGRAM"]) == to_program(t)
  assert namespace["PRESET"] == "cpu" and callable(namespace["main"])
  assert "mlp: relu2 -> gelu" in script and digest(t)[:16] in script
  with pytest.raises(ValueError, match="unknown preset 'tpu'"):
    export_script(t, "tpu")


def test_registration_errors():
  with pytest.raises(ValueError, match="not a Program field"):
    register_knob("optim.lr", [0.1])
  with pytest.raises(ValueError, match="already searchable"):
    register_knob("optim.matrix_lr", [0.1])
  with pytest.raises(ValueError, match="module/list field"):
    register_knob("model.mlp_mult", [1.0])
  with pytest.raises(ValueError, match="fields must be"):
    register_mlp_variant("bad", nc_model.MLP_VARIANTS["relu2"], fields={"width": Choice((1.0,))})
  with pytest.raises(ValueError, match="already registered with a different implementation"):
    register_mlp_variant("swiglu", nc_model.MLP_VARIANTS["relu2"],
                         fields={"mult": Choice((1.5, 2.0, 2.75, 3.5, 4.0, 5.5), 2.75, ordinal=True)}, matrices=3)


def test_readme_example_new_mlp_variant(fresh_registries):
  # README "Extend the search space": a plain-ReLU MLP is one registration.
  from nanochat_jax.model import PointwiseMLP
  register_mlp_variant("relu", functools.partial(PointwiseMLP, activation=jax.nn.relu),
                       fields={"mult": Choice((2.0, 4.0, 6.0), default=4.0, ordinal=True)})

  space = nanochat_space("cpu")
  t = space.default()
  assert SwapVariant("model.mlp", "relu") in space.legal_edits(t)
  t = space.apply(t, SwapVariant("model.mlp", "relu"))
  assert space.legal_actions(t)[("set", "model.mlp.mult")] == [2.0, 6.0]
  cfg = to_program(t).model
  assert (cfg.mlp, cfg.mlp_mult) == ("relu", 4.0)
  model = nnx.eval_shape(lambda: nc_model.GPT(cfg, rngs=nnx.Rngs(0)))
  assert nc_model.num_params(model) == estimate_params(cfg)
