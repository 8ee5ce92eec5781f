"""The PPO meta-learner (`agent="ppo"`): a Flax NNX policy over structured edits of the program tree."""
from arrl.ppo.agent import PPOAgent

__all__ = ["PPOAgent"]
