"""NAS-Bench-Graph (Qin et al., NeurIPS 2022 Datasets and Benchmarks) as an arrl space and objective.

Each architecture is a macro topology (`link`: for each of 4 computing nodes, the node it reads from, 0 =
the input; 9 topologies) and one operation per node (9 GNN layers; 5 for proteins). The tables of the
`nas-bench-graph` wheel hold, per dataset, the validation and test accuracy, latency and parameter count
of each architecture up to isomorphism: 26,206 architectures (2,021 for proteins), keyed by
`Arch(link, ops).valid_hash()`, which maps every (link, ops) encoding to its canonical form. The space is
the raw grid (9 x 9^4 = 59,049 encodings); its constraint rejects the encodings whose canonical form is
not in the table, which are exactly the 9 all-skip networks. So every table architecture is reachable, and
every point of the space is a table architecture (several encodings can name the same one, as in the
benchmark's own usage; a query of an isomorphic duplicate counts as a query).

Objective: -validation accuracy (minimised). The test accuracy is only read to score the architecture a
search selects (the best validation accuracy so far): test regret = the table's best test accuracy minus it.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Iterator

from arrl.space import Space
from arrl.tree import Node

DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")
OP_FIELDS = ("op0", "op1", "op2", "op3")


@dataclasses.dataclass(frozen=True)
class Record:
  valid: float       # validation accuracy
  test: float        # test accuracy
  latency: float     # seconds per inference
  params: float      # millions of parameters


def link_name(link: list[int] | tuple[int, ...]) -> str:
  return "".join(str(i) for i in link)


class NasBenchGraph:
  """One dataset's table, its arrl space and the objective."""

  def __init__(self, dataset: str = "cora"):
    if dataset not in DATASETS:
      raise ValueError(f"unknown NAS-Bench-Graph dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    try:
      import nas_bench_graph as nbg
    except ImportError as e:
      raise ImportError("NAS-Bench-Graph needs `pip install nas-bench-graph==1.4.0` (the `bench` extra)") from e
    self.dataset = dataset
    self._nbg = nbg
    # proteins was run with 5 of the 9 operations (keys still use the 9-operation encoding)
    self.ops: tuple[str, ...] = tuple(nbg.gnn_list_proteins if dataset == "proteins" else nbg.gnn_list)
    self.links: tuple[str, ...] = tuple(link_name(lk) for lk in nbg.link_list)
    self.table: dict[int, Record] = {
        int(k): Record(float(v["valid_perf"]), float(v["perf"]), float(v["latency"]), float(v["para"]))
        for k, v in nbg.light_read(dataset).items()}
    self.best_test = max(r.test for r in self.table.values())
    self.best_valid = max(r.valid for r in self.table.values())

  def key(self, params: dict[str, Any]) -> int:
    """The table key of {link, op0..op3}: its canonical form's (whether or not the table holds it)."""
    return self._key(params["link"], tuple(params[f] for f in OP_FIELDS))

  @functools.lru_cache(maxsize=None)
  def _key(self, link: str, ops: tuple[str, ...]) -> int:
    return self._nbg.Arch([int(c) for c in link], list(ops)).valid_hash()

  def _tree_error(self, tree: Node) -> str | None:
    params = {name: tree[name] for name in ("link", *OP_FIELDS)}
    if self.key(params) in self.table:
      return None
    return f"{params} is not a NAS-Bench-Graph architecture (the table holds no all-skip network)"

  @functools.cached_property
  def space(self) -> Space:
    spec = {"link": {"choices": list(self.links)}, **{f: {"choices": list(self.ops)} for f in OP_FIELDS}}
    return Space.from_dict(spec, constraints=(self._tree_error,))

  def record(self, params: dict[str, Any]) -> Record:
    key = self.key(params)
    if key not in self.table:
      raise ValueError(f"{params} is not in the {self.dataset} table (see NasBenchGraph.space's constraint)")
    return self.table[key]

  def objective(self, params: dict[str, Any]) -> float:
    return -self.record(params).valid

  def raw_architectures(self) -> Iterator[dict[str, str]]:
    """Every (link, ops) combination of the raw grid, in the table or not."""
    for link, ops in itertools.product(self.links, itertools.product(self.ops, repeat=len(OP_FIELDS))):
      yield {"link": link, **dict(zip(OP_FIELDS, ops))}
