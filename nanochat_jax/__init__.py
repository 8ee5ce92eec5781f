"""nanochat_jax: the frozen training environment and the Flax nanochat GPT."""
