"""A copy of a shipped network directory with STOP's bias set high (P(STOP after the first edit) ~ 1): the network's
own proposals cut to one edit, for a diagnostic of what the unguided later edits cost."""
import json, shutil, sys
import jax
import numpy as np
from arrl.ppo import network
src, dst, bias = sys.argv[1], sys.argv[2], float(sys.argv[3])
shutil.copytree(src, dst, dirs_exist_ok=True)
with np.load(f"{src}/params.npz") as z:
  params, raw = z["params"].copy(), z["net_config"]
cfg = network.NetConfig(**json.loads(raw.tobytes().decode()))
off = 0
for path, leaf in jax.tree_util.tree_flatten_with_path(network.structure(cfg)[1])[0]:
  if str(getattr(path[0], "key", "")) == "stop_bias":
    params[off] = bias
  off += leaf.size
np.savez_compressed(f"{dst}/params.npz", params=params, net_config=raw)
