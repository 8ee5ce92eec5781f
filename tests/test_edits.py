"""Edits, legal actions and flat spaces."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from arrl import edits
from arrl.edits import (IllegalEdit, ListDelete, ListInsert, ListReplace, SetField, SwapVariant, apply,
                        edit_from_dict, legal_actions, legal_edits, legal_moves, make_edit)
from arrl.grammar import Child, Choice, Grammar, ListOf
from arrl.space import Space
from arrl.tree import Node, diff, get_path


def _grammar() -> Grammar:
  g = Grammar()
  g.add_variant("program", "nanochat", {"model": Child("model"), "lr": Choice((0.02, 0.04, 0.08), 0.04)})
  g.add_variant("model", "gpt", {"depth": Choice((4, 8, 12), 8, ordinal=True), "mlp": Child("mlp", "relu2"),
                                 "windows": ListOf(Choice(("S", "L")), 1, 5, ("S", "L"))})
  g.add_variant("mlp", "relu2", {"mult": Choice((2.0, 4.0), 4.0)})
  g.add_variant("mlp", "swiglu", {"mult": Choice((2.0, 2.75), 2.75), "gate": Choice(("silu", "gelu"))})
  g.add_constraint(lambda t: "depth 12 needs lr <= 0.04" if get_path(t, "model.depth") == 12
                   and get_path(t, "lr") > 0.04 else None)
  return g


def test_set_field_and_clear_illegal_message():
  g = _grammar()
  t = g.default("program")
  t2 = apply(g, t, SetField("lr", 0.08))
  assert get_path(t2, "lr") == 0.08 and diff(t, t2) == "lr: 0.04 -> 0.08"
  with pytest.raises(IllegalEdit, match=r"^lr=0.07 is not legal; legal: 0.02, 0.04, 0.08$"):
    apply(g, t, SetField("lr", 0.07))
  with pytest.raises(IllegalEdit, match="depth 12 needs lr <= 0.04"):
    apply(g, t2, SetField("model.depth", 12))
  with pytest.raises(IllegalEdit, match="no field 'width'"):
    apply(g, t, SetField("model.width", 1))
  with pytest.raises(IllegalEdit, match="is a Child field; 'set' edits need a Choice field"):
    apply(g, t, SetField("model.mlp", "swiglu"))
  with pytest.raises(IllegalEdit, match="not a list item"):
    apply(g, t, SetField("model.windows[0]", "L"))
  assert isinstance(IllegalEdit("x"), ValueError)


def test_canonical_value_is_stored():
  g = _grammar()
  t = apply(g, g.default("program"), SetField("model.mlp.mult", 2))
  assert repr(get_path(t, "model.mlp.mult")) == "2.0"  # the grid's float, so digests agree
  with pytest.raises(IllegalEdit, match="not legal"):
    apply(g, g.default("program"), SetField("model.depth", True))


def test_swap_variant_resets_fields_to_defaults():
  g = _grammar()
  t = apply(g, g.default("program"), SetField("model.mlp.mult", 2.0))
  t = apply(g, t, SwapVariant("model.mlp", "swiglu"))
  assert get_path(t, "model.mlp") == Node("mlp", "swiglu", {"mult": 2.75, "gate": "silu"})
  t = apply(g, t, SwapVariant("model.mlp", "relu2"))
  assert get_path(t, "model.mlp") == Node("mlp", "relu2", {"mult": 4.0})
  with pytest.raises(IllegalEdit, match="unknown variant 'geglu' of kind 'mlp'; known: relu2, swiglu"):
    apply(g, t, SwapVariant("model.mlp", "geglu"))


def test_list_edits():
  g = _grammar()
  t = g.default("program")
  assert get_path(apply(g, t, ListInsert("model.windows", 0, "L")), "model.windows") == ("L", "S", "L")
  assert get_path(apply(g, t, ListInsert("model.windows", 2, "S")), "model.windows") == ("S", "L", "S")
  assert get_path(apply(g, t, ListDelete("model.windows", 1)), "model.windows") == ("S",)
  assert get_path(apply(g, t, ListReplace("model.windows", 1, "S")), "model.windows") == ("S", "S")
  with pytest.raises(IllegalEdit, match=r"index 3 is out of range 0..2"):
    apply(g, t, ListInsert("model.windows", 3, "S"))
  with pytest.raises(IllegalEdit, match=r"length 0 is not in 1..5"):
    apply(g, apply(g, t, ListDelete("model.windows", 0)), ListDelete("model.windows", 0))
  with pytest.raises(IllegalEdit, match=r"windows\[1\]='X' is not legal"):
    apply(g, t, ListReplace("model.windows", 1, "X"))
  with pytest.raises(IllegalEdit, match="'insert' edits need a ListOf field"):
    apply(g, t, ListInsert("lr", 0, 0.02))


def test_edit_json_site_value_round_trip():
  for e in [SetField("lr", 0.02), SwapVariant("model.mlp", "swiglu"), ListInsert("model.windows", 1, "S"),
            ListDelete("model.windows", 0), ListReplace("model.windows", 1, "L")]:
    d = e.to_dict()
    assert edit_from_dict(d) == e and d["op"] == e.site[0]
    assert make_edit(e.site, e.value) == e
    hash(e.site)
  assert SetField("lr", 0.02).site == ("set", "lr")
  assert ListReplace("w", 3, "L").site == ("replace", "w", 3) and ListDelete("w", 2).value is None
  with pytest.raises(ValueError, match="needs 'op'"):
    edit_from_dict({"op": "rename", "path": "x"})
  with pytest.raises(ValueError, match="exactly the keys op, path, index"):
    edit_from_dict({"op": "delete", "path": "x"})
  with pytest.raises(ValueError, match="takes no value"):
    make_edit(("delete", "x", 0), "S")


def test_legal_edits_are_exactly_the_valid_non_noop_results():
  g = _grammar()
  t = apply(g, g.default("program"), SetField("lr", 0.08))
  legal = legal_edits(g, t)
  results = [apply(g, t, e) for e in legal]
  assert legal_moves(g, t) == list(zip(legal, results))  # typed equality: False, 0 and 0.0 differ
  assert t not in results and len(set(results)) == len(results)  # no no-ops, no duplicate results
  assert SetField("model.depth", 12) not in legal  # blocked by the constraint
  assert {SetField("model.depth", 4), SwapVariant("model.mlp", "swiglu"), ListDelete("model.windows", 0)} <= set(legal)
  # Every candidate left out either fails or duplicates a kept result.
  for e, new in edits._candidates(g, t):
    if e not in legal:
      assert g.check(new) is not None or new in results


def test_legal_actions_group_legal_edits():
  g = _grammar()
  t = g.default("program")
  actions = legal_actions(g, t)
  legal = legal_edits(g, t)
  assert sum(len(v) for v in actions.values()) == len(legal)
  assert {make_edit(site, v) for site, vs in actions.items() for v in vs} == set(legal)
  assert actions[("set", "model.depth")] == [4, 12]
  assert actions[("insert", "model.windows", 0)] == ["S", "L"]
  assert actions[("insert", "model.windows", 1)] == ["L"]  # "S" after the first "S" = index 0's "S"


# ---------------------------------------------------------------------------------------------------------------
# Flat spaces.

def test_from_dict_flat_space():
  space = Space.from_dict({"op1": {"choices": ["conv3", "skip"]},
                           "lr": {"choices": [0.01, 0.02], "default": 0.02, "ordinal": True}})
  t = space.default()
  assert space.to_params(t) == {"op1": "conv3", "lr": 0.02}
  assert space.legal_actions(t) == {("set", "op1"): ["skip"], ("set", "lr"): [0.01]}
  t2 = space.apply(t, SetField("op1", "skip"))
  assert space.from_params({"op1": "skip"}) == t2
  with pytest.raises(ValueError, match="no field 'op2'"):
    space.from_params({"op2": 1})
  with pytest.raises(ValueError, match=r"lr=0.03 is not legal"):
    space.from_params({"lr": 0.03})
  with pytest.raises(ValueError, match="expected a 'params' tree"):
    space.validate(Node("other", "x"))


@pytest.mark.parametrize("spec, match", [
    ({}, "non-empty dict"),
    ([("a", 1)], "non-empty dict"),
    ({"a": [1, 2]}, "'a': expected a dict with 'choices'"),
    ({"a": {"values": [1]}}, "'a': unknown key\\(s\\) values; allowed: choices, default, ordinal"),
    ({"a": {"default": 1}}, "'a': 'choices' must be a non-empty list"),
    ({"a": {"choices": []}}, "'a': 'choices' must be a non-empty list"),
    ({"a": {"choices": [1, 2], "default": 3}}, "'a': Choice default 3 is not one of"),
    ({"a": {"choices": [1, 1]}}, "'a': Choice values must be distinct"),
    ({"a": {"choices": [1, None]}}, "'a': .*not a scalar"),
    ({"a": {"choices": [1], "ordinal": "yes"}}, "'a': 'ordinal' must be true or false"),
    ({"a.b": {"choices": [1]}}, "field name 'a.b' must be an identifier"),
])
def test_from_dict_errors(spec, match):
  with pytest.raises(ValueError, match=match):
    Space.from_dict(spec)


_scalars = st.one_of(st.integers(-5, 5), st.sampled_from([0.5, 1e-3, 2.0, 3.25]), st.sampled_from("abcde"),
                     st.booleans())


@st.composite
def flat_specs(draw):
  names = draw(st.lists(st.sampled_from(["a", "b", "c", "lr", "op", "width"]), min_size=1, max_size=5, unique=True))
  spec = {}
  for name in names:
    choices = draw(st.lists(_scalars, min_size=1, max_size=5, unique_by=lambda v: (type(v) is bool, v)))
    spec[name] = {"choices": choices, "ordinal": draw(st.booleans())}
    if draw(st.booleans()):
      spec[name]["default"] = draw(st.sampled_from(choices))
  return spec


def _count(t: Node, defaults: dict) -> str | None:
  changed = sum(1 for k, v in t.fields if repr(v) != repr(defaults[k]))
  return "at most 2 fields may differ from their defaults" if changed > 2 else None


@settings(max_examples=40, deadline=None)
@given(flat_specs(), st.lists(st.integers(0, 10**6), max_size=12), st.integers(0, 2**32 - 1))
def test_random_flat_space_edit_sequences_stay_valid(spec, picks, seed):
  base = Space.from_dict(spec)
  defaults = base.to_params(base.default())
  space = Space.from_dict(spec, constraints=[lambda t: _count(t, defaults)])
  t = space.default()
  for pick in picks:
    legal = space.legal_edits(t)
    actions = space.legal_actions(t)
    assert sum(map(len, actions.values())) == len(legal)
    assert space.legal_moves(t) == [(e, space.apply(t, e)) for e in legal]
    if not legal:
      break
    t = space.apply(t, legal[pick % len(legal)])
    space.validate(t)
    assert _count(t, defaults) is None
    assert space.from_params(space.to_params(t)) == t
  s = space.sample(np.random.default_rng(seed))
  space.validate(s)


def test_sample_is_uniform_on_an_unconstrained_flat_space():
  space = Space.from_dict({"a": {"choices": [1, 2, 3, 4]}, "b": {"choices": ["x", "y"]}})
  rng = np.random.default_rng(0)
  counts = {}
  for _ in range(800):
    p = space.to_params(space.sample(rng))
    counts[p["a"]] = counts.get(p["a"], 0) + 1
  assert set(counts) == {1, 2, 3, 4} and all(150 < c < 250 for c in counts.values())


def test_sample_covers_variants_and_lists():
  g = _grammar()
  space = Space(g, "program")
  rng = np.random.default_rng(1)
  trees = [space.sample(rng) for _ in range(60)]
  for t in trees:
    space.validate(t)
  assert {get_path(t, "model.mlp").variant for t in trees} == {"relu2", "swiglu"}
  assert len({len(get_path(t, "model.windows")) for t in trees}) >= 4
  assert {get_path(t, "model.mlp.gate") for t in trees if get_path(t, "model.mlp").variant == "swiglu"} == {
      "silu", "gelu"}
