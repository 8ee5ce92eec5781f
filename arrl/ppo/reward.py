"""The reward of one trial, in noise units.

    g = (best_before - score) / max(sigma, floor)            # the gain in noise units
    r = clip(sign(g) * log(1 + |g|), -clip, clip) - step_cost

Why these defaults:
  - symlog, not a plain clip: most trials of a search are worse than the best, many by far more than 5
    noise units. A plain clip gives them all the same -5, so the policy cannot tell "slightly worse" (a
    setting worth keeping near) from "ruinous"; symlog keeps that order up to e^5 ~ 150 units and still
    bounds one outlier's weight (measured on NAS-Bench-Graph: benchmarks/results/ppo_ablation.md).
    `squash="clip"` gives the plain clip.
  - Noise units make one reward scale fit any objective: val-bpb gains of 0.002 matter on a GPU run whose
    seeds differ by 0.001, and the same policy should transfer to objectives of another scale.
  - `reward_clip` = 5 (after symlog, ~150 noise units): a larger cap lets one lucky outlier dominate a batch
    of 8 (advantages are normalised per batch).
  - `floor` = rel_floor * |best_before| + abs_floor, so deterministic objectives (sigma 0) still give finite
    rewards: 1e-3 relative is below any noise a real training run has (val-bpb ~1 with sigma ~1e-3), so it
    only acts when sigma is (near) zero.
  - A failed trial (crash, diverged, timeout, compile-timeout) costs `fail_penalty` = -clip: as bad as the
    worst measurable result, no worse, so the policy is not scared away from legal but risky regions more
    than a bad result would.
  - An early-aborted trial is scored from its predicted final score when it carries one (`outcome.score`
    or `outcome.info["predicted_score"]`), else it gets the failure penalty.
  - `step_cost` (default 0, off) is the optional efficiency term: a constant price per trial, so a policy
    that reaches the same gain in fewer trials earns more.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from arrl.trial import FAILED, Status


@dataclasses.dataclass(frozen=True)
class RewardConfig:
  reward_clip: float = 5.0
  fail_penalty: float = -5.0
  rel_floor: float = 1e-3
  abs_floor: float = 1e-8
  step_cost: float = 0.0
  squash: str = "symlog"     # "symlog": sign(g) * log(1 + |g|), then clipped; "clip": g clipped

  def __post_init__(self) -> None:
    if self.squash not in SQUASHES:
      raise ValueError(f"squash must be one of {', '.join(SQUASHES)}, got {self.squash!r}")
    if self.reward_clip <= 0:
      raise ValueError(f"reward_clip must be > 0, got {self.reward_clip}")
    if self.rel_floor < 0 or self.abs_floor <= 0:
      raise ValueError(f"reward floors must be rel_floor >= 0 and abs_floor > 0, got {self.rel_floor}, "
                       f"{self.abs_floor}")
    if self.step_cost < 0:
      raise ValueError(f"step_cost must be >= 0 (a price per trial), got {self.step_cost}")


SQUASHES = ("symlog", "clip")


def squash(gain: float, cfg: RewardConfig) -> float:
  """A gain in noise units mapped into [-reward_clip, reward_clip]."""
  if cfg.squash == "symlog":
    gain = math.copysign(math.log1p(abs(gain)), gain)
  return min(max(gain, -cfg.reward_clip), cfg.reward_clip)


def noise_unit(best: float, sigma: float, cfg: RewardConfig) -> float:
  """The score difference worth one reward unit: sigma, floored relative to |best|."""
  return max(float(sigma or 0.0), cfg.rel_floor * abs(best) + cfg.abs_floor)


def trial_score(outcome: Any) -> float | None:
  """The score a trial is rewarded for, or None when it failed without one."""
  if outcome.status in FAILED:
    return None
  score = outcome.score
  if score is None and outcome.status == Status.ABORTED:
    score = (outcome.info or {}).get("predicted_score")
  if score is None or not math.isfinite(float(score)):
    return None
  return float(score)


def reward(outcome: Any, cfg: RewardConfig = RewardConfig()) -> float:
  """The reward of one finished trial (an `arrl.agents.base.Outcome`)."""
  score = trial_score(outcome)
  if score is None:
    return cfg.fail_penalty - cfg.step_cost
  if outcome.best_before is None:  # nothing to compare with yet
    return -cfg.step_cost
  gain = (outcome.best_before - score) / noise_unit(outcome.best_before, outcome.sigma, cfg)
  return squash(gain, cfg) - cfg.step_cost
