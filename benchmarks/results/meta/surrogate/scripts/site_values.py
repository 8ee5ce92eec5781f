"""Copy a --ship-to directory of a surrogate network as the same parameters with NetConfig.site_guide_from_values
(sites scored by their values' best predicted gain): an inference-time variant of the trained network."""
import sys
from arrl.ppo import network
from arrl.ppo.checkpoint import load_card, load_pretrained, save_pretrained
src, dst = sys.argv[1:3]
flat = load_pretrained(src, network.NetConfig(surrogate=True))
card = {k: v for k, v in load_card(src).items() if k not in ("net_config", "parameters", "params_sha256")}
save_pretrained(dst, network.NetConfig(surrogate=True, site_guide_from_values=True), flat,
                {**card, "variant": f"{src}'s parameters with site_guide_from_values"})
