"""arrl: AutoResearch-RL, a JAX-native agent that searches nanochat training programs."""
