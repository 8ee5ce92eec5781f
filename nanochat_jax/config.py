"""The training program: model, optimizer and schedule hyperparameters.

A `Program` fully describes what arrl may edit. Everything that must stay fixed across
experiments (data, tokenizer, eval protocol, budget) lives in `nanochat_jax.env` instead.
Defaults are autoresearch's train.py.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

from nanochat_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int = 8192
  sequence_len: int = 2048
  depth: int = 8
  aspect_ratio: int = 64            # d_model = depth * aspect_ratio, rounded up to head_dim
  head_dim: int = 128
  n_kv_head: int = 0                # 0 -> n_head (plain MHA); must divide n_head (GQA)
  window_pattern: str = "SSSL"      # per layer, cycled; S = half the context, L = full; last layer always L
  rope_base: float = 10000.0
  mlp: str = "relu2"                # key of nanochat_jax.model.MLP_VARIANTS
  mlp_mult: float = 4.0             # hidden width = mlp_mult * d_model
  norm: str = "rmsnorm"             # key of nanochat_jax.model.NORM_VARIANTS
  attention: str = "standard"       # key of nanochat_jax.model.ATTENTION_VARIANTS
  posenc: str = "rope"              # key of nanochat_jax.model.POSENC_VARIANTS (applied to q and k)
  ve_pattern: str = "alternate"     # value-embedding layers: alternate (last included) | all | last | none
  ve_gate_channels: int = 32
  softcap: float = 15.0             # logits = softcap * tanh(logits / softcap); 0 disables
  resid_lambda_init: float = 1.0
  x0_lambda_init: float = 0.1
  wte_init_std: float = 1.0
  lm_head_init_std: float = 0.001
  matrix_init_scale: float = 1.0    # c_q/c_k/c_v/c_fc/value embeds ~ U(+-scale * sqrt(3/d))

  @property
  def d_model(self) -> int:
    raw = self.depth * self.aspect_ratio
    return -(-raw // self.head_dim) * self.head_dim

  @property
  def n_head(self) -> int:
    return self.d_model // self.head_dim

  @property
  def n_kv(self) -> int:
    return self.n_kv_head or self.n_head

  @property
  def mlp_hidden(self) -> int:
    return int(round(self.mlp_mult * self.d_model))

  def window_sizes(self) -> tuple[int, ...]:
    """Left attention window per layer: query i sees keys i-w..i (flash-attn's (w, 0)); sequence_len = full."""
    out = []
    for i in range(self.depth):
      c = "L" if i == self.depth - 1 else self.window_pattern[i % len(self.window_pattern)]
      out.append(self.sequence_len if c == "L" else self.sequence_len // 2)
    return tuple(out)

  def has_ve(self, layer: int) -> bool:
    if self.ve_pattern == "alternate":
      return layer % 2 == (self.depth - 1) % 2
    if self.ve_pattern == "all":
      return True
    if self.ve_pattern == "last":
      return layer == self.depth - 1
    return False  # "none"

  def validate(self) -> None:
    """Raise ValueError with a clear message if the model cannot be built."""
    if self.depth < 1:
      raise ValueError(f"depth must be >= 1, got {self.depth}")
    if self.d_model % self.head_dim:
      raise ValueError("d_model must be a multiple of head_dim")
    if self.n_head % self.n_kv:
      raise ValueError(f"n_kv_head={self.n_kv} must divide n_head={self.n_head}")
    if self.head_dim % 2:
      raise ValueError("head_dim must be even for RoPE")
    if not self.window_pattern or set(self.window_pattern) - {"S", "L"}:
      raise ValueError(f"window_pattern must be a non-empty string of S/L, got {self.window_pattern!r}")
    if self.ve_pattern not in ("alternate", "all", "last", "none"):
      raise ValueError(f"unknown ve_pattern {self.ve_pattern!r}")
    if self.ve_gate_channels > self.d_model:
      raise ValueError("ve_gate_channels must be <= d_model")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  matrix_optimizer: str = "muon"    # for the 2-D matrices inside the blocks; nanochat_jax.optimizer.MATRIX_OPTIMIZERS
  # Muon for the 2-D matrices inside the blocks.
  matrix_lr: float = 0.04           # times sqrt(max(1, rows/cols)) per matrix
  muon_momentum: float = 0.95       # Nesterov momentum after the ramp
  muon_momentum_start: float = 0.85
  muon_momentum_ramp_steps: int = 300
  muon_ns_steps: int = 5            # Polar-Express orthogonalisation steps (<= 5)
  muon_beta2: float = 0.95          # NorMuon second-moment decay
  weight_decay: float = 0.2         # cautious, decayed linearly to 0 over the budget
  # AdamW (no weight decay) for embeddings, lm_head and scalars; lrs are scaled by (d_model/768)^-0.5.
  embedding_lr: float = 0.6         # wte and value embeddings
  unembedding_lr: float = 0.004     # lm_head
  scalar_lr: float = 0.5            # x0_lambdas; resid_lambdas use scalar_lr * resid_lr_mult
  resid_lr_mult: float = 0.01
  adam_beta1: float = 0.8
  adam_beta2: float = 0.95
  x0_beta1: float = 0.96
  adam_eps: float = 1e-10

  def lr_scale(self, d_model: int) -> float:
    return (d_model / 768) ** -0.5


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  total_batch_tokens: int = 2**19   # tokens per optimizer step (gradient accumulation fills it)
  device_batch_size: int = 128      # rows per micro-batch
  lr_schedule: str = "trapezoid"    # shape of the LR multiplier over progress; key of LR_SCHEDULES
  warmup_ratio: float = 0.0
  warmdown_ratio: float = 0.5
  final_lr_frac: float = 0.0

  def lr_multiplier(self, progress: float) -> float:
    return LR_SCHEDULES.lookup(self.lr_schedule)(self, progress)


LrSchedule = Callable[[ScheduleConfig, float], float]  # (schedule, progress in [0, 1]) -> LR multiplier


def trapezoid(s: ScheduleConfig, progress: float) -> float:
  """autoresearch's: linear warmup, constant, linear warmdown to final_lr_frac."""
  if progress < s.warmup_ratio:
    return (progress + 1e-8) / s.warmup_ratio
  if progress < 1.0 - s.warmdown_ratio:
    return 1.0
  cooldown = max(0.0, (1.0 - progress) / s.warmdown_ratio) if s.warmdown_ratio > 0 else 0.0
  return cooldown + (1.0 - cooldown) * s.final_lr_frac


LR_SCHEDULES: Registry[LrSchedule] = Registry("lr_schedule", {"trapezoid": trapezoid})


@dataclasses.dataclass(frozen=True)
class Program:
  """A complete training program: what arrl's tree compiles to and nanochat_jax trains."""
  model: ModelConfig = ModelConfig()
  optim: OptimConfig = OptimConfig()
  schedule: ScheduleConfig = ScheduleConfig()

  def validate(self) -> None:
    self.model.validate()
    s = self.schedule
    row = self.model.sequence_len
    if s.device_batch_size < 1 or s.total_batch_tokens % (s.device_batch_size * row):
      raise ValueError(
          f"total_batch_tokens={s.total_batch_tokens} must be a multiple of device_batch_size*sequence_len="
          f"{s.device_batch_size * row}")
    if not 0 <= s.warmup_ratio + s.warmdown_ratio <= 1:
      raise ValueError("warmup_ratio + warmdown_ratio must lie in [0, 1]")
    if not 1 <= self.optim.muon_ns_steps <= 5:
      raise ValueError("muon_ns_steps must be in 1..5")

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True, indent=1)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Program":
    parts = {}
    for f in dataclasses.fields(cls):
      sub_cls = {"model": ModelConfig, "optim": OptimConfig, "schedule": ScheduleConfig}[f.name]
      given = dict(d.get(f.name, {}))
      known = {x.name for x in dataclasses.fields(sub_cls)}
      unknown = set(given) - known
      if unknown:
        raise ValueError(f"unknown {f.name} field(s): {', '.join(sorted(unknown))}")
      parts[f.name] = sub_cls(**given)
    unknown = set(d) - {"model", "optim", "schedule"}
    if unknown:
      raise ValueError(f"unknown program section(s): {', '.join(sorted(unknown))}")
    return cls(**parts)

  @classmethod
  def from_json(cls, text: str) -> "Program":
    return cls.from_dict(json.loads(text))

  def replace(self, **sections: Any) -> "Program":
    return dataclasses.replace(self, **sections)


def muon_momentum(optim: OptimConfig, step: int) -> float:
  frac = min(step / max(1, optim.muon_momentum_ramp_steps), 1.0)
  return (1 - frac) * optim.muon_momentum_start + frac * optim.muon_momentum


def weight_decay(optim: OptimConfig, progress: float) -> float:
  return optim.weight_decay * max(0.0, 1.0 - progress)
