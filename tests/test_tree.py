"""Trees and grammars: identity, paths, JSON, digests, diffs, validation messages."""
import dataclasses
import json
import pickle
import random

import pytest
from hypothesis import given, settings, strategies as st

from arrl.grammar import Child, Choice, Grammar, ListOf
from arrl.tree import (Node, diff, digest, flatten, from_data, from_json, get_path, parse_path, render, set_path,
                       to_data, to_json)


def _tree() -> Node:
  mlp = Node("mlp", "relu2", (("mult", 4.0),))
  model = Node("model", "gpt", (("depth", 8), ("mlp", mlp), ("windows", ("S", "S", "S", "L"))))
  optim = Node("optim", "muon", {"matrix_lr": 0.04, "nesterov": True})
  return Node("program", "nanochat", (("model", model), ("optim", optim)))


def _grammar() -> Grammar:
  g = Grammar()
  g.add_variant("program", "nanochat", {"model": Child("model"), "optim": Child("optim")})
  g.add_variant("model", "gpt", {"depth": Choice((4, 8, 12), 8, ordinal=True), "mlp": Child("mlp"),
                                 "windows": ListOf(Choice(("S", "L")), 1, 6, ("S", "S", "S", "L"))})
  g.add_variant("mlp", "relu2", {"mult": Choice((2.0, 4.0), 4.0)})
  g.add_variant("mlp", "swiglu", {"mult": Choice((2.0, 2.75), 2.75)})
  g.add_variant("optim", "muon", {"matrix_lr": Choice((0.02, 0.04, 0.08), 0.04), "nesterov": Choice((True, False))})
  return g


def test_node_is_immutable_hashable_and_order_free():
  a = Node("optim", "muon", (("b", 1), ("a", 2.5)))
  b = Node("optim", "muon", {"a": 2.5, "b": 1})
  assert a == b and hash(a) == hash(b) and a.names == ("a", "b")
  assert len({a, b, _tree()}) == 2
  with pytest.raises(dataclasses.FrozenInstanceError):
    a.kind = "x"
  assert Node("x", "y", {"l": [1, 2]})["l"] == (1, 2)  # lists become tuples


def test_replace_checks_changed_values_and_pickle_drops_cached_hash():
  t = _tree()
  assert t.replace(optim=t["optim"].replace(matrix_lr=0.05))["optim"]["matrix_lr"] == 0.05
  with pytest.raises(ValueError, match="not a scalar"):
    t["optim"].replace(matrix_lr=None)
  with pytest.raises(KeyError, match="no field 'lr'; fields: matrix_lr, nesterov"):
    t["optim"].replace(lr=0.1)
  hash(t)
  t2 = pickle.loads(pickle.dumps(t))
  assert "_hash" not in t2.__dict__ and t2 == t and hash(t2) == hash(t)


@pytest.mark.parametrize("bad, match", [
    (lambda: Node("", "v"), "non-empty"),
    (lambda: Node("k", "v", (("a", 1), ("a", 2))), "duplicate"),
    (lambda: Node("k", "v", {"a": None}), "not a scalar"),
    (lambda: Node("k", "v", {"a": float("nan")}), "finite"),
    (lambda: Node("k", "v", {"a": [Node("k", "v")]}), r"a\[0\].*not a scalar"),
])
def test_node_rejects_bad_values(bad, match):
  with pytest.raises(ValueError, match=match):
    bad()


def test_paths_get_and_set():
  t = _tree()
  assert parse_path("model.windows[2]") == ("model", "windows", 2)
  assert get_path(t, "model.mlp.mult") == 4.0
  assert get_path(t, "model.windows[3]") == "L"
  assert get_path(t, "") is t
  t2 = set_path(t, "model.windows[0]", "L")
  assert get_path(t2, "model.windows") == ("L", "S", "S", "L")
  assert get_path(t, "model.windows") == ("S", "S", "S", "L")  # original untouched
  t3 = set_path(t, "optim.matrix_lr", 0.08)
  assert t3["model"] is t["model"]  # untouched subtrees are shared
  for bad, match in [("model.nope", "no field 'nope'"), ("model.windows[9]", "out of range"),
                     ("model.depth.x", "scalar"), ("a[1].b", "bad path"), ("model..depth", "bad path")]:
    with pytest.raises(ValueError, match=match):
      get_path(t, bad)


def test_json_round_trip_and_canonical_form():
  t = _tree()
  text = to_json(t)
  assert from_json(text) == t
  assert to_json(from_json(text)) == text
  assert " " not in text and '"mult":4.0' in text and '"windows":["S","S","S","L"]' in text
  assert from_data(to_data(t)) == t
  with pytest.raises(ValueError, match="exactly the keys"):
    from_json('{"kind": "x"}')
  with pytest.raises(ValueError, match="does not parse"):
    from_json("{")


def _shuffle_keys(data, rnd: random.Random):
  if isinstance(data, dict):
    items = [(k, _shuffle_keys(v, rnd)) for k, v in data.items()]
    rnd.shuffle(items)
    return dict(items)
  return data


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_digest_stable_under_json_key_order(rnd):
  t = _tree()
  text = json.dumps(_shuffle_keys(to_data(t), rnd), indent=rnd.choice([None, 2]))
  assert digest(from_json(text)) == digest(t)
  assert from_json(text) == t


def test_digest_distinguishes_content_and_number_types():
  t = _tree()
  assert digest(t) == digest(_tree()) and len(digest(t)) == 64
  assert digest(set_path(t, "optim.matrix_lr", 0.05)) != digest(t)
  assert digest(set_path(t, "model.depth", 8.0)) != digest(t)  # 8 vs 8.0: different JSON, different program


def test_equality_is_typed_like_the_digest():
  t = _tree()
  for a, b in ((False, 0), (True, 1), (1, 1.0), ((1, 2), (1, 2.0))):
    x, y = set_path(t, "model.depth", a), set_path(t, "model.depth", b)
    assert x != y and len({x, y}) == 2 and (digest(x) != digest(y))
    assert x == set_path(t, "model.depth", a) and x == from_json(to_json(x))


def test_legal_edits_between_a_bool_and_an_int_of_one_grid():
  from arrl.space import Space
  space = Space.from_dict({"flag": {"choices": [False, 0, 1, True]}})
  values = list(space.legal_actions(space.default()).values())[0]
  assert values == [0, 1, True]  # the default is False; 0 is another setting, not a no-op


def test_flatten_and_diff():
  t = _tree()
  flat = flatten(t)
  assert flat["model.mlp"] == "relu2" and flat["model.mlp.mult"] == 4.0 and flat["model.windows"] == ("S",) * 3 + ("L",)
  assert "program" not in flat and "" not in flat
  assert diff(t, t) == ""
  t2 = set_path(t, "model.mlp", Node("mlp", "swiglu", {"mult": 4.0}))
  t2 = set_path(t2, "optim.matrix_lr", 0.05)
  t2 = set_path(t2, "model.windows", ("S", "S", "L"))
  assert diff(t, t2) == "mlp: relu2 -> swiglu; windows: SSSL -> SSL; matrix_lr: 0.04 -> 0.05"
  t3 = set_path(t, "model.mlp", Node("mlp", "swiglu", {"gate": 1}))
  assert diff(t, t3) == "mlp: relu2 -> swiglu; mult: 4.0 -> (unset); gate: (unset) -> 1"
  assert "model.mlp.mult = 4.0" in render(t)


def test_grammar_default_and_validate_ok():
  g = _grammar()
  d = g.default("program")
  assert d == _tree()
  g.validate(d)
  assert g.default("mlp", "swiglu") == Node("mlp", "swiglu", {"mult": 2.75})


@pytest.mark.parametrize("edit, match", [
    (lambda t: set_path(t, "optim.matrix_lr", 0.05), r"optim.matrix_lr=0.05 is not legal; legal: 0.02, 0.04, 0.08"),
    (lambda t: set_path(t, "model.depth", 8.0), r"model.depth=8.0 must be written exactly as the grid's 8"),
    (lambda t: set_path(t, "optim.nesterov", 1), r"optim.nesterov=1 is not legal; legal: True, False"),
    (lambda t: set_path(t, "model.windows", ("S",) * 7), r"model.windows: length 7 is not in 1..6"),
    (lambda t: set_path(t, "model.windows", ("S", "X")), r"model.windows\[1\]='X' is not legal; legal: 'S', 'L'"),
    (lambda t: set_path(t, "model.mlp", Node("mlp", "geglu", {"mult": 4.0})),
     r"model.mlp: unknown variant 'geglu' of kind 'mlp'; known: relu2, swiglu"),
    (lambda t: set_path(t, "model.mlp", Node("mlp", "relu2", {"mult": 4.0, "bias": 1})),
     r"model.mlp: unknown field\(s\) bias for mlp:relu2; fields: mult"),
    (lambda t: set_path(t, "model.mlp", Node("mlp", "relu2")), r"model.mlp.mult: missing field"),
    (lambda t: set_path(t, "model.mlp", 3), r"model.mlp: expected a 'mlp' module"),
    (lambda t: set_path(t, "model.depth", (4,)), r"model.depth: expected a scalar"),
    (lambda t: Node("nope", "x"), r"unknown kind 'nope'"),
])
def test_validate_messages(edit, match):
  g = _grammar()
  with pytest.raises(ValueError, match=match):
    g.validate(edit(g.default("program")))


def test_constraints_are_checked_with_their_message():
  g = _grammar()
  g.add_constraint(lambda t: "deep models need nesterov" if get_path(t, "model.depth") == 12
                   and not get_path(t, "optim.nesterov") else None)
  t = set_path(set_path(g.default("program"), "model.depth", 12), "optim.nesterov", False)
  assert g.check(t) == "deep models need nesterov"
  with pytest.raises(ValueError, match="deep models need nesterov"):
    g.validate(t)
  g.validate(set_path(t, "optim.nesterov", True))


@pytest.mark.parametrize("make, match", [
    (lambda: Choice(()), "at least one"),
    (lambda: Choice((1, 1)), "distinct"),
    (lambda: Choice((1, 2), 3), "default 3 is not one of"),
    (lambda: Choice((1, None)), "not a scalar"),
    (lambda: ListOf(Choice(("S",)), 3, 2), "min_len <= max_len"),
    (lambda: ListOf(Choice(("S",)), 1, 2, ("S", "S", "S")), "length 3"),
    (lambda: ListOf(("S", "L")), "must be a Choice"),
])
def test_bad_specs(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_grammar_registration_errors():
  g = _grammar()
  with pytest.raises(ValueError, match="already registered"):
    g.add_variant("mlp", "relu2", {})
  with pytest.raises(ValueError, match="must be an identifier"):
    g.add_variant("mlp", "x", {"a.b": Choice((1,))})
  with pytest.raises(ValueError, match="spec must be"):
    g.add_variant("mlp", "y", {"a": (1, 2)})
  with pytest.raises(ValueError, match="unknown kind 'attn'"):
    g.variants("attn")
  assert Choice((True, 1, 1.5)).index(1.0) == 1  # bools stay apart from ints
  assert Choice((1, 2, 3, 4, 5), ordinal=True).rank(3) == 0.5
