"""Copy a --ship-to directory of a surrogate network with its guide weight (sur_w) set to 0: the same network,
the surrogate's scores no longer in the logits (an ablation)."""
import json, os, shutil, sys
import numpy as np, jax
from arrl.ppo import network
from arrl.ppo.checkpoint import load_card, load_pretrained, save_pretrained
src, dst = sys.argv[1:3]
net = network.NetConfig(surrogate=True)
flat = load_pretrained(src, net).copy()
off = 0
for path, leaf in jax.tree_util.tree_flatten_with_path(network.structure(net)[1])[0]:
  if str(getattr(path[0], "key", "")) == "sur_w":
    print("sur_w was", flat[off]); flat[off] = 0.0
  off += leaf.size
card = load_card(src)
card = {k: v for k, v in card.items() if k not in ("net_config", "parameters", "params_sha256")}
save_pretrained(dst, net, flat, {**card, "ablation": f"{src} with sur_w set to 0"})
