"""Checks of config values that would otherwise train nonsense or fail deep inside a library.

``check_config`` runs first in every run, before any data loads, and raises a UserError that
names the key, the bad value and the range it must lie in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_budget.data import TRAIN_SIZE
from mnist_budget.errors import UserError


@dataclass(frozen=True)
class Rule:
    key: str  # dotted config key; a missing key is not checked
    holds: Callable[[Any], bool]
    must: str  # what the value must be, for the message


def _number(test: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and test(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


RULES = (
    Rule("seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    Rule("data.batch_size", _positive_int, "a positive integer"),
    Rule("data.eval_batch_size", _positive_int, "a positive integer"),
    Rule("data.val_size", lambda v: _positive_int(v) and v < TRAIN_SIZE, f"an integer from 1 to {TRAIN_SIZE - 1}"),
    Rule("trainer.max_epochs", _positive_int, "a positive integer"),
    Rule("optim.lr", _number(lambda v: v > 0), "a positive number"),
    Rule("optim.momentum", _number(lambda v: 0 <= v < 1), "in [0, 1)"),
    Rule("optim.weight_decay", _number(lambda v: v >= 0), "a number >= 0"),
    Rule("optim.label_smoothing", _number(lambda v: 0 <= v < 1), "in [0, 1)"),
    Rule("model.net.dropout", _number(lambda v: 0 <= v < 1), "in [0, 1)"),
    Rule("model.budget", _positive_int, "a positive integer"),
    Rule("callbacks.ema.decay", _number(lambda v: 0 < v < 1), "in (0, 1)"),
    Rule("callbacks.early_stopping.stopping_threshold", _number(lambda v: 0 < v <= 1), "in (0, 1]"),
)


def check_config(cfg: DictConfig) -> None:
    """Raise a UserError for the first value that breaks a rule (see RULES)."""
    for rule in RULES:
        value = OmegaConf.select(cfg, rule.key, default=None)
        if value is not None and not rule.holds(value):
            raise UserError(f"{rule.key}={value!r} is invalid: it must be {rule.must}")
