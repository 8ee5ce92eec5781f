"""Command-line helpers shared by `nanochat_jax.train` and `arrl.main`: one-line errors, checked arguments."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn

from nanochat_jax.config import check_seed
from nanochat_jax.env import check_budget


class Parser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line, `error: ...`, exit code 2 (no usage block)."""

  def error(self, message: str) -> NoReturn:
    print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
    sys.exit(2)


def _checked(text: str, convert: Callable[[str], Any], check: Callable[[Any], Any]) -> Any:
  # ArgumentTypeError, not ValueError: argparse replaces a ValueError's message by "invalid value".
  try:
    value = convert(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"not a valid {convert.__name__}: {text!r}") from None
  try:
    return check(value)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def budget_arg(text: str) -> float:
  """argparse type of --budget-s: finite seconds in (0, MAX_BUDGET_S]."""
  return _checked(text, float, check_budget)


def seed_arg(text: str) -> int:
  """argparse type of --seed: an integer in [0, 2**32)."""
  return _checked(text, int, check_seed)
