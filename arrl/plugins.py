"""Plugins: modules that register search-space variants when imported, in the loop and in every trial worker.

A plugin is given as
  a module name    `--plugin my_pkg.variants` (importable from the working directory or installed), or
  a Python file    `--plugin examples/plugin_example.py`, imported as module `arrl_plugin_<file stem>`: the same
                   name in every process, so its functions have the same "module:qualname" everywhere;
and installed packages add theirs with an entry point in the group `arrl.plugins`
(pyproject: `[project.entry-points."arrl.plugins"] my_variants = "my_pkg.variants"`), loaded always.

Builders never travel between processes: a Program names its modules by string, and a trial worker imports the
run's plugins (their sources checked against the loop's digests) before it builds the model.

A run records its plugins in RUN_DIR/plugins.json (spec, module, distribution version, source digest). Resuming
with a plugin missing, added or changed is refused unless --force (which records the plugins of the resumed run).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from types import ModuleType
from typing import Iterable, Iterator, Sequence

from arrl.io import write_json_atomic

ENTRY_POINT_GROUP = "arrl.plugins"
PLUGINS_FILE = "plugins.json"
PATH_PREFIX = "arrl_plugin_"


class PluginError(ValueError):
  """A plugin cannot be imported, or differs from the run's record."""


@dataclasses.dataclass(frozen=True)
class Plugin:
  spec: str            # a module name, or the absolute path of a .py file
  module: str          # the module name it is imported as
  version: str | None  # the installed distribution's version, if it comes from one
  digest: str          # sha256 (16 hex) of its source (a package: all of its .py files)


_LOADED: dict[str, Plugin] = {}  # spec -> plugin, in load order


def normalize(spec: str) -> str:
  """A .py file becomes an absolute path (a worker may start elsewhere); a module name stays as it is."""
  if spec.endswith(".py") or os.sep in spec:
    return os.path.abspath(spec)
  return spec


def module_name(spec: str) -> str:
  if os.path.isabs(spec):
    return PATH_PREFIX + re.sub(r"\W", "_", os.path.splitext(os.path.basename(spec))[0])
  return spec


def source_digest(module: ModuleType) -> str:
  path = getattr(module, "__file__", None)
  if not path:
    raise PluginError(f"plugin {module.__name__} has no source file to fingerprint")
  h = hashlib.sha256()
  if os.path.basename(path) == "__init__.py":  # a package: every .py file under it, in a fixed order
    root = os.path.dirname(path)
    files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
                   if f.endswith(".py"))
  else:
    root, files = os.path.dirname(path), [os.path.basename(path)]
  for rel in files:
    with open(os.path.join(root, rel), "rb") as f:
      h.update(rel.encode() + b"\0" + f.read() + b"\0")
  return h.hexdigest()[:16]


def _import(spec: str) -> ModuleType:
  name = module_name(spec)
  if not os.path.isabs(spec):
    return importlib.import_module(spec)
  module = sys.modules.get(name)
  if module is not None:
    if os.path.abspath(getattr(module, "__file__", "") or "") != spec:
      raise PluginError(f"--plugin {spec}: module name {name} is taken by {getattr(module, '__file__', module)}; "
                        "rename the file")
    return module
  if not os.path.isfile(spec):
    raise PluginError(f"--plugin {spec}: no such file")
  loader_spec = importlib.util.spec_from_file_location(name, spec)
  module = importlib.util.module_from_spec(loader_spec)
  sys.modules[name] = module  # before running it: its classes pickle and resolve by this name
  try:
    loader_spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise
  return module


def _version(name: str) -> str | None:
  dists = importlib.metadata.packages_distributions().get(name.split(".")[0])
  return importlib.metadata.version(dists[0]) if dists else None


def load(spec: str) -> Plugin:
  """Imports a plugin (once per process) and describes it; any import failure is one PluginError line."""
  spec = normalize(spec)
  if spec in _LOADED:
    return _LOADED[spec]
  try:
    module = _import(spec)
  except PluginError:
    raise
  except Exception as e:  # a plugin's own bug, a missing module, a registration conflict
    raise PluginError(f"--plugin {spec}: import failed: {type(e).__name__}: {e}") from e
  version = None if os.path.isabs(spec) else _version(module.__name__)  # a file belongs to no distribution
  plugin = Plugin(spec, module.__name__, version, source_digest(module))
  _LOADED[spec] = plugin
  return plugin


def loaded() -> list[Plugin]:
  """The plugins imported in this process, in order."""
  return list(_LOADED.values())


@contextlib.contextmanager
def scoped() -> Iterator[None]:
  """Plugins loaded inside the block are forgotten (and their modules unloaded) when it exits."""
  saved = dict(_LOADED)
  try:
    yield
  finally:
    for spec in _LOADED.keys() - saved.keys():
      sys.modules.pop(_LOADED[spec].module, None)
    _LOADED.clear()
    _LOADED.update(saved)


def entry_point_specs() -> list[str]:
  """Modules of the installed packages' `arrl.plugins` entry points, by entry-point name."""
  eps = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
  return [ep.module for ep in eps]


def load_for_worker(entries: Iterable[dict]) -> None:
  """Worker side: import the loop's plugins ({"spec", "digest"}) and refuse one whose source changed since."""
  for entry in entries:
    plugin = load(entry["spec"])
    if plugin.digest != entry["digest"]:
      raise PluginError(f"plugin {plugin.spec} changed while the run was going (source digest {entry['digest']} "
                        f"in the loop, {plugin.digest} here)")


def load_run_plugins(given: Sequence[str], run_dir: str, force: bool = False) -> list[Plugin]:
  """Loads the given plugins and the installed ones; a resumed run (RUN_DIR/state.json exists) must load the
  same plugins with the same sources as its RUN_DIR/plugins.json (none if it has none), unless `force`."""
  specs = list(dict.fromkeys([*(normalize(s) for s in given), *entry_point_specs()]))
  plugins = [load(s) for s in specs]
  if os.path.exists(os.path.join(run_dir, "state.json")) and not force:
    _check(run_dir, plugins)
  return plugins


def record(run_dir: str, plugins: Sequence[Plugin]) -> None:
  """Writes RUN_DIR/plugins.json (atomically): what a resume of the run must load."""
  path = os.path.join(run_dir, PLUGINS_FILE)
  write_json_atomic(path, [dataclasses.asdict(p) for p in plugins])


def recorded(run_dir: str) -> list[dict]:
  """RUN_DIR/plugins.json: the run's plugins as dicts of Plugin's fields (none for a run without the file)."""
  path = os.path.join(run_dir, PLUGINS_FILE)
  try:
    with open(path) as f:
      records = json.load(f)
    if not isinstance(records, list) or not all(isinstance(r, dict) and {"spec", "digest"} <= r.keys()
                                                for r in records):
      raise ValueError("expected a list of plugins with 'spec' and 'digest'")
  except FileNotFoundError:
    return []
  except (OSError, ValueError) as e:
    raise PluginError(f"cannot read {path}: {e}") from None
  return records


def _check(run_dir: str, plugins: list[Plugin]) -> None:
  path = os.path.join(run_dir, PLUGINS_FILE)
  before = {r["spec"]: r for r in recorded(run_dir)}
  now = {p.spec: p for p in plugins}
  for spec, rec in before.items():
    if spec not in now:
      raise PluginError(f"{path}: this run used plugin {spec}, which is not loaded now; pass --plugin {spec} "
                        "(or install it), or --force to resume without it")
    if now[spec].digest != rec["digest"]:
      raise PluginError(f"{path}: plugin {spec} changed since the run started (source digest {rec['digest']} -> "
                        f"{now[spec].digest}); results would not compare. Use a new --run-dir, or --force")
  added = sorted(now.keys() - before.keys())
  if added:
    raise PluginError(f"{path}: this run did not use plugin(s) {', '.join(added)}; drop them, use a new --run-dir, "
                      "or --force")
