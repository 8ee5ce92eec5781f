"""The training program: model, optimizer and schedule hyperparameters.

A `Program` fully describes what arrl may edit. Everything that must stay fixed across
experiments (data, tokenizer, eval protocol, budget) lives in `nanochat_jax.env` instead.
Defaults are autoresearch's train.py.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from typing import Any, Callable, Protocol, Sequence

from nanochat_jax.registry import Registry

MAX_SEED = 2**32  # seeds are ints in [0, MAX_SEED): what numpy and jax.random accept without wrapping


@dataclasses.dataclass(frozen=True)
class Range:
  """A closed or half-open interval of legal values for one numeric field."""
  lo: float = -math.inf
  hi: float = math.inf
  lo_open: bool = False
  hi_open: bool = False

  def __contains__(self, x: float) -> bool:
    return (self.lo < x if self.lo_open else self.lo <= x) and (x < self.hi if self.hi_open else x <= self.hi)

  def __str__(self) -> str:
    closing = ")" if self.hi_open or self.hi == math.inf else "]"
    return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{closing}"


_ANY, _NON_NEG, _POS = Range(), Range(0), Range(0, lo_open=True)
_UNIT, _MOMENTUM = Range(0, 1), Range(0, 1, hi_open=True)


@functools.cache
def _field_types(cls: type) -> tuple[tuple[str, type], ...]:
  hints = typing.get_type_hints(cls)  # slow (~0.5 ms): arrl validates many candidate programs
  return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def check_fields(cfg: Any, section: str, ranges: dict[str, Range]) -> None:
  """Every field has its declared type (int: no bool, float: finite int or float, str) and lies in its range."""
  for field, want in _field_types(type(cfg)):
    value, name = getattr(cfg, field), f"{section}.{field}"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not {str: isinstance(value, str), int: numeric and isinstance(value, int), float: numeric}[want]:
      raise ValueError(f"{name} must be {want.__name__}, got {value!r} ({type(value).__name__})")
    if want is float and not math.isfinite(value):
      raise ValueError(f"{name} must be finite, got {value!r}")
    if want is not str and value not in ranges.get(field, _ANY):
      raise ValueError(f"{name} must lie in {ranges[field]}, got {value!r}")


def check_seed(seed: Any) -> int:
  if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
    raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
  return seed


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
    check_fields(self, "model", _MODEL_RANGES)
    if self.d_model % self.head_dim:
      raise ValueError("d_model must be a multiple of head_dim")
    if self.n_head % self.n_kv:
      raise ValueError(f"n_kv_head={self.n_kv} must divide n_head={self.n_head}")
    if self.head_dim % 2:
      raise ValueError("head_dim must be even for RoPE")
    if not self.mlp or not self.norm:
      raise ValueError("model.mlp and model.norm must be non-empty names")
    if not self.window_pattern or set(self.window_pattern) - {"S", "L"}:
      raise ValueError(f"window_pattern must be a non-empty string of S/L, got {self.window_pattern!r}")
    if self.ve_pattern not in ("alternate", "all", "last", "none"):
      raise ValueError(f"unknown ve_pattern {self.ve_pattern!r}")
    if self.ve_gate_channels > self.d_model:
      raise ValueError("ve_gate_channels must be <= d_model")


_MODEL_RANGES = {
    "vocab_size": Range(1), "sequence_len": Range(2), "depth": Range(1), "aspect_ratio": Range(1),
    "head_dim": Range(2), "n_kv_head": _NON_NEG, "rope_base": _POS, "mlp_mult": _POS, "ve_gate_channels": _NON_NEG,
    "softcap": _NON_NEG, "wte_init_std": _NON_NEG, "lm_head_init_std": _NON_NEG, "matrix_init_scale": _NON_NEG,
}


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


_OPTIM_RANGES = {
    "matrix_lr": _NON_NEG, "embedding_lr": _NON_NEG, "unembedding_lr": _NON_NEG, "scalar_lr": _NON_NEG,
    "resid_lr_mult": _NON_NEG, "weight_decay": _NON_NEG, "muon_momentum": _MOMENTUM, "muon_momentum_start": _MOMENTUM,
    "muon_momentum_ramp_steps": _NON_NEG, "muon_ns_steps": Range(1, 5), "muon_beta2": _MOMENTUM,
    "adam_beta1": _MOMENTUM, "adam_beta2": _MOMENTUM, "x0_beta1": _MOMENTUM, "adam_eps": _POS,
}


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


_SCHEDULE_RANGES = {"total_batch_tokens": Range(1), "device_batch_size": Range(1), "warmup_ratio": _UNIT,
                    "warmdown_ratio": _UNIT, "final_lr_frac": _UNIT}


@dataclasses.dataclass(frozen=True)
class Program:
  """A complete training program: what arrl's tree compiles to and nanochat_jax trains."""
  model: ModelConfig = ModelConfig()
  optim: OptimConfig = OptimConfig()
  schedule: ScheduleConfig = ScheduleConfig()

  def validate(self) -> None:
    """Raise ValueError naming the field if any value has the wrong type, is out of range or is inconsistent."""
    for section in ("model", "optim", "schedule"):
      if not isinstance(getattr(self, section), _SECTIONS[section]):
        raise ValueError(f"{section} must be a {_SECTIONS[section].__name__}, got {getattr(self, section)!r:.80}")
    self.model.validate()
    check_fields(self.optim, "optim", _OPTIM_RANGES)
    check_fields(self.schedule, "schedule", _SCHEDULE_RANGES)
    s = self.schedule
    row = self.model.sequence_len
    if s.total_batch_tokens % (s.device_batch_size * row):
      raise ValueError(
          f"total_batch_tokens={s.total_batch_tokens} must be a multiple of "
          f"device_batch_size*sequence_len={s.device_batch_size * row}")
    if not 0 <= s.warmup_ratio + s.warmdown_ratio <= 1:
      raise ValueError("warmup_ratio + warmdown_ratio must lie in [0, 1]")

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True, indent=1)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Program":
    if not isinstance(d, dict):
      raise ValueError(f"a program is a JSON object with sections model/optim/schedule, got {type(d).__name__}")
    parts = {}
    for f in dataclasses.fields(cls):
      sub_cls = _SECTIONS[f.name]
      given = d.get(f.name, {})
      if not isinstance(given, dict):
        raise ValueError(f"program section {f.name!r} must be a JSON object, got {type(given).__name__}")
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


_SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "schedule": ScheduleConfig}


def muon_momentum(optim: OptimConfig, step: int) -> float:
  frac = min(step / max(1, optim.muon_momentum_ramp_steps), 1.0)
  return (1 - frac) * optim.muon_momentum_start + frac * optim.muon_momentum


def weight_decay(optim: OptimConfig, progress: float) -> float:
  return optim.weight_decay * max(0.0, 1.0 - progress)


# Size estimates: the presets' caps on parameters and training memory (arrl's search constraint and the
# train CLI's pre-flight check), computed without building the model.

class SizeModel(Protocol):
  """What the estimates need of a block module (attention, MLP), per layer."""
  def params(self, cfg: ModelConfig) -> int: ...       # parameters
  def activations(self, cfg: ModelConfig) -> int: ...  # values kept per token for the backward pass


@dataclasses.dataclass(frozen=True)
class MlpSize:
  matrices: int = 2  # d_model x hidden weight matrices (3 for gated MLPs)

  def params(self, cfg: ModelConfig) -> int:
    return self.matrices * cfg.d_model * cfg.mlp_hidden

  def activations(self, cfg: ModelConfig) -> int:
    return self.matrices * cfg.mlp_hidden


@dataclasses.dataclass(frozen=True)
class AttentionSize:
  """nanochat_jax.model.Attention: c_q, c_proj (d x d), c_k, c_v (d x kv); ~7 d + 4 kv activations with the norms."""

  def params(self, cfg: ModelConfig) -> int:
    d, kv = cfg.d_model, cfg.n_kv * cfg.head_dim
    return 2 * d * d + 2 * d * kv

  def activations(self, cfg: ModelConfig) -> int:
    return 7 * cfg.d_model + 4 * cfg.n_kv * cfg.head_dim


def estimate_params(cfg: ModelConfig, sizes: Sequence[SizeModel]) -> int:
  """Parameter count of nanochat_jax.model.GPT(cfg) whose blocks hold modules of `sizes` (exact for built-ins)."""
  d, kv = cfg.d_model, cfg.n_kv * cfg.head_dim
  ve_layers = sum(cfg.has_ve(i) for i in range(cfg.depth))
  ve = ve_layers * (cfg.vocab_size * kv + cfg.ve_gate_channels * cfg.n_kv)
  per_layer = sum(s.params(cfg) for s in sizes)
  return cfg.depth * per_layer + ve + 2 * cfg.vocab_size * d + 2 * cfg.depth  # + wte, lm_head, lambdas


def estimate_memory_gb(program: Program, sizes: Sequence[SizeModel]) -> float:
  """Rough peak training memory (GB = 1e9 bytes) of one micro-batch step.

  16 bytes per parameter (fp32 weights, grads, two optimizer moments) plus, per token of the micro-batch,
  bf16 activations kept for the backward pass (the size models' activations per layer), and ~8 bytes per
  vocabulary entry for the logits and their fp32 loss buffers.
  """
  cfg = program.model
  per_token = 2 * cfg.depth * sum(s.activations(cfg) for s in sizes) + 8 * cfg.vocab_size
  tokens = program.schedule.device_batch_size * cfg.sequence_len
  return (16 * estimate_params(cfg, sizes) + per_token * tokens) / 1e9


def size_error(program: Program, max_params: int, max_memory_gb: float, sizes: Sequence[SizeModel]) -> str | None:
  """Why `program` is over a preset's caps, or None."""
  params = estimate_params(program.model, sizes)
  if params > max_params:
    return f"estimated {params / 1e6:.1f}M parameters exceed the preset's cap of {max_params / 1e6:.1f}M"
  memory = estimate_memory_gb(program, sizes)
  if memory > max_memory_gb:
    return (f"estimated training memory {memory:.1f} GB exceeds the preset's cap of {max_memory_gb:g} GB "
            f"(lower device_batch_size or the model size)")
  return None
