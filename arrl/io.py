"""Small file helpers shared by the loop, plugins, pretraining and the command line."""
from __future__ import annotations

import json
import os
from typing import Any


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes `obj` as JSON to `path` so a reader (or a kill -9) sees the old file or the new one, never a part."""
  tmp = f"{path}.{os.getpid()}.tmp"   # per process: a second writer never shares a temp file
  with open(tmp, "w") as f:
    json.dump(obj, f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
