"""The data a run sees: corpus split, tokenizer, token arrays and the frozen-environment digest."""
from __future__ import annotations

import dataclasses

import numpy as np

from nanochat_jax import corpus as corpus_lib
from nanochat_jax import tokenizer as tokenizer_lib
from nanochat_jax.env import Preset, env_digest


@dataclasses.dataclass(frozen=True)
class RunData:
  train_docs: list[np.ndarray]     # token ids per document, each starting with BOS
  val_docs: list[np.ndarray]
  token_bytes: np.ndarray          # (V,) UTF-8 bytes per token id, 0 for specials
  bos_id: int
  vocab_size: int
  corpus_digest: str
  tokenizer_digest: str

  def env_digest(self, preset: Preset, budget_s: float | None = None) -> str:
    """The frozen-environment digest of a run on this data (a budget override is part of it)."""
    if budget_s is not None:
      preset = dataclasses.replace(preset, budget_s=float(budget_s))
    return env_digest(preset, self.corpus_digest, self.tokenizer_digest)


def load_run_data(preset: Preset, data: str | None = None, val_data: str | None = None,
                  cache_dir: str | None = None) -> RunData:
  """Load (or build and cache) everything frozen about a run's data."""
  corpus = corpus_lib.load_corpus(data, val_data)
  tok = tokenizer_lib.get_tokenizer(corpus, vocab_size=preset.program.model.vocab_size, cache_dir=cache_dir)
  train, val = tokenizer_lib.tokenize_corpus(tok, corpus, cache_dir=cache_dir)
  return RunData(train_docs=train, val_docs=val, token_bytes=tok.token_bytes(), bos_id=tok.bos_id,
                 vocab_size=tok.vocab_size, corpus_digest=corpus.digest, tokenizer_digest=tok.digest)
