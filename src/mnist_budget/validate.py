"""Checks of config values that would otherwise train nonsense or fail deep inside a library.

``check_config`` runs first in every run, before any data loads, and raises a UserError that
names the key, the bad value and the range it must lie in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, get_args

from omegaconf import DictConfig, OmegaConf

from mnist_budget.errors import UserError
from mnist_budget.mnist_files import TRAIN_SIZE

# Importing Lightning takes seconds; a refused command should not wait for it. These values and
# keys (the shipped trainer configs' and the usual precisions) are accepted without asking it.
COMMON_PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "64-true", "bf16-true", "16-true", "32", "16", "bf16", "64")
TRAINER_CONFIGS = Path(__file__).resolve().parents[2] / "conf" / "trainer"


@dataclass(frozen=True)
class Rule:
    key: str  # dotted config key; a missing key is not checked
    holds: Callable[[Any], bool]
    must: str  # what the value must be, for the message


def _number(test: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and test(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@cache
def lightning_precisions() -> tuple[str, ...]:
    """What trainer.precision accepts: auto (mnist_budget.hardware picks) or one of Lightning's values."""
    from lightning.fabric.connector import _PRECISION_INPUT_INT, _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    names = ("auto", *get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS))
    return (*names, *(str(value) for value in get_args(_PRECISION_INPUT_INT) if str(value) not in names))


@cache
def trainer_arguments() -> frozenset[str]:
    import lightning as L

    return frozenset(inspect.signature(L.Trainer.__init__).parameters) | {"_target_"}


@cache
def shipped_trainer_keys() -> frozenset[str]:
    keys: set[str] = set()
    for path in TRAINER_CONFIGS.glob("*.yaml"):
        keys |= set(OmegaConf.load(path).keys())
    return frozenset(str(key) for key in keys)


def _precision(value: Any) -> bool:
    return str(value) in COMMON_PRECISIONS or str(value) in lightning_precisions()


RULES = (
    Rule("seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    Rule("threads", lambda v: v == "auto" or _positive_int(v), "auto or a positive integer"),
    Rule("data.batch_size", _positive_int, "a positive integer"),
    Rule("data.eval_batch_size", _positive_int, "a positive integer"),
    Rule("data.val_size", lambda v: _positive_int(v) and v < TRAIN_SIZE, f"an integer from 1 to {TRAIN_SIZE - 1}"),
    Rule("trainer.max_epochs", _positive_int, "a positive integer"),
    Rule("trainer.precision", _precision, "auto or one of Lightning's: 32-true, bf16-mixed, 16-mixed, 64-true, ..."),
    Rule("optim.lr", _number(lambda v: v > 0), "a positive number"),
    Rule("optim.momentum", _number(lambda v: 0 <= v < 1), "in [0, 1)"),
    Rule("optim.weight_decay", _number(lambda v: v >= 0), "a number >= 0"),
    Rule("optim.label_smoothing", _number(lambda v: 0 <= v < 1), "in [0, 1)"),
    Rule("model.net.dropout", _number(lambda v: 0 <= v < 1), "in [0, 1)"),
    Rule("model.budget", _positive_int, "a positive integer"),
    Rule("test_checkpoint", lambda v: v in ("best", "last"), "best or last"),
    Rule(
        "trainer.overfit_batches",
        lambda v: v == 0,
        "0: Lightning's overfitting swaps out the in-memory loader's sampler; use debug=overfit",
    ),
    Rule("callbacks.ema.decay", _number(lambda v: 0 < v < 1), "in (0, 1)"),
    Rule("callbacks.early_stopping.stopping_threshold", _number(lambda v: 0 < v <= 1), "in (0, 1]"),
)


def check_trainer_keys(cfg: DictConfig) -> None:
    """Every trainer.* key must be an argument of Lightning's Trainer (``++trainer.foo=1`` adds any key)."""
    for key in cfg.get("trainer") or {}:
        if key not in shipped_trainer_keys() and key not in trainer_arguments():
            raise UserError(
                f"trainer.{key} is not an argument of Lightning's Trainer: remove it or fix its spelling "
                "(the arguments: python -c 'import lightning; help(lightning.Trainer.__init__)')"
            )


def check_config(cfg: DictConfig) -> None:
    """Raise a UserError for the first value that breaks a rule (see RULES) or an unknown trainer key."""
    check_trainer_keys(cfg)
    for rule in RULES:
        value = OmegaConf.select(cfg, rule.key, default=None)
        if value is not None and not rule.holds(value):
            raise UserError(f"{rule.key}={value!r} is invalid: it must be {rule.must}")
