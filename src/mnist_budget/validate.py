"""Checks of a composed config that need no Lightning: the rules of the project's own keys, and
building the network and the augmentation once on a small batch.

Run before Hydra starts a job (mnist_budget.preflight, through each task's ``check``) and, for
the rules, again at the start of each task, so that a task called in-process is checked the same
way. A component checks its own constructor arguments where it is built, and the preflight
reaches those checks by building it or by calling the same function: the data module's batch
sizes and split (mnist_budget.mnist_files.check_data_arguments), the networks' dropout rates
(mnist_budget.models.blocks.check_rates), the budget (mnist_budget.models.check_budget), the
augmentation's ranges, the memory layout (mnist_budget.hardware). ``RULES`` holds the keys that
are no component's argument. A rule whose key is missing from the composed config is not checked
(an optional callback that is off); tests/test_validate.py fails when a rule's key exists in no
shipped config, so that renaming a key cannot switch its rule off unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_budget.errors import UserError, find_user_error, first_line
from mnist_budget.mnist_files import (
    check_data_arguments,
    check_mnist_files,
    dataset_name,
    is_positive_int,
    raw_folder,
)
from mnist_budget.models import build_network, check_budget

# What trainer.precision accepts: auto (mnist_budget.hardware picks) or one of Lightning's values
# (tests/test_validate.py compares this list with Lightning's own, so that it cannot fall behind).
PRECISIONS = (
    "auto", "transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
    "32-true", "64-true", "64", "32", "16", "bf16",
)  # fmt: skip


@dataclass(frozen=True)
class Rule:
    key: str  # dotted config key
    holds: Callable[[Any], bool]
    must: str  # what the value must be, for the message


def _number(test: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and test(value)


RULES = (
    Rule("seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    Rule("threads", lambda v: v == "auto" or is_positive_int(v), "auto or a positive integer"),
    Rule("trainer.max_epochs", is_positive_int, "a positive integer"),
    Rule("trainer.precision", lambda v: str(v) in PRECISIONS, "auto or one of Lightning's: 32-true, bf16-mixed, 16-mixed, 64-true, ..."),
    Rule("optim.lr", _number(lambda v: v > 0), "a positive number"),
    Rule("optim.momentum", _number(lambda v: 0 <= v < 1), "in [0, 1)"),
    Rule("optim.weight_decay", _number(lambda v: v >= 0), "a number >= 0"),
    Rule("optim.label_smoothing", _number(lambda v: 0 <= v < 1), "in [0, 1)"),
    Rule("model.budget", is_positive_int, "a positive integer"),
    Rule("test_checkpoint", lambda v: v in ("best", "last"), "best or last"),
    Rule(
        "trainer.overfit_batches",
        lambda v: v == 0,
        "0: Lightning's overfitting swaps out the in-memory loader's sampler; use debug=overfit",
    ),
    Rule("unsure_below", _number(lambda v: 0 <= v <= 1), "a probability in [0, 1]"),
    Rule("tta", lambda v: isinstance(v, bool), "true or false"),
    Rule("eval_tta", lambda v: isinstance(v, bool), "true or false"),
    Rule("callbacks.ema.decay", _number(lambda v: 0 < v < 1), "in (0, 1)"),
    Rule("callbacks.early_stopping.stopping_threshold", _number(lambda v: 0 < v <= 1), "in (0, 1]"),
)


def check_config(cfg: DictConfig) -> None:
    """Raise a UserError for the first value that breaks a rule (see RULES), then check the data
    module's arguments (cheap: nothing is loaded)."""
    for rule in RULES:
        value = OmegaConf.select(cfg, rule.key, default=None)
        if value is not None and not rule.holds(value):
            raise UserError(f"{rule.key}={value!r} is invalid: it must be {rule.must}")
    check_early_stopping_can_stop(cfg)
    data = cfg.get("data")
    if data is not None:
        check_data_arguments(data.get("batch_size"), data.get("eval_batch_size"), data.get("val_size"))


def check_early_stopping_can_stop(cfg: DictConfig) -> None:
    """Early stopping acts on a validation: with the default's one validation after the last epoch
    (conf/evaluation/tta_at_end.yaml) it could never stop a run early."""
    trainer = cfg.get("trainer") or {}
    every, epochs = trainer.get("check_val_every_n_epoch", 1), trainer.get("max_epochs", 1)
    if "early_stopping" in (cfg.get("callbacks") or {}) and isinstance(every, int) and every >= epochs > 1:
        raise UserError(
            f"callbacks.early_stopping with trainer.check_val_every_n_epoch={every} (of {epochs} epochs) "
            "validates only after the last epoch, so it can never stop early: add evaluation=every_epoch"
        )


def _as_user_error(err: Exception, what: str, fix: str) -> UserError:
    """A component's own UserError as it is; any other failure as one line naming the component."""
    return find_user_error(err) or UserError(f"{what} ({first_line(err.__cause__ or err).rstrip('.')}): {fix}")


def check_model(cfg: DictConfig) -> None:
    """Build the network and run it on two images: a bad argument, a model over its budget or a
    network that cannot process a 28x28 digit is refused now, not in the first training step."""
    fix = "fix the model.* override"
    net = build_network(cfg.model.net, cfg.model.name)
    check_budget(net, cfg.model.budget, cfg.model.name)
    try:
        with torch.no_grad():
            logits = net.eval()(torch.zeros(2, 1, 28, 28))
    except Exception as err:  # noqa: BLE001
        raise _as_user_error(err, f"model {cfg.model.name} fails on a batch of 28x28 images", fix) from err
    if tuple(logits.shape) != (2, 10):
        raise UserError(f"model {cfg.model.name} returns shape {tuple(logits.shape)} for 2 images, not (2, 10): {fix}")


def check_augment(cfg: DictConfig) -> None:
    """Build the augmentation and run it on two images: its own checks refuse a bad range (say a
    negative rotation), and an argument of the wrong type fails here rather than in training."""
    fix = "fix the augment.* override"
    try:
        augment = instantiate(cfg.augment)
        augmented = augment(torch.rand(2, 1, 28, 28))
    except Exception as err:  # noqa: BLE001 - Hydra wraps the component's own error
        raise _as_user_error(err, "augment cannot be built or fails on a batch of images", fix) from err
    if tuple(augmented.shape) != (2, 1, 28, 28):
        raise UserError(f"augment turns 2 images of 1x28x28 into shape {tuple(augmented.shape)}: {fix}")


def check_extra_train(cfg: DictConfig) -> None:
    """Build the extra training digits (``extra_train=fonts``: its own checks refuse bad settings;
    nothing is downloaded or drawn yet); refuse them beside another data set, or when fonts are
    missing and may not be downloaded."""
    settings = cfg.data.get("extra_train")
    if settings is None:
        return
    from mnist_budget.font_digits import check_data_set

    try:
        extra = instantiate(settings)
    except Exception as err:
        raise _as_user_error(err, "data.extra_train cannot be built", "fix the data.extra_train.* override") from err
    check_data_set(dataset_name(cfg))
    extra.check_fonts(str(cfg.data.data_dir))


def check_data_files(cfg: DictConfig) -> None:
    """Damaged data files are refused now; missing ones too unless the run may download them
    (an unknown ``data.dataset`` too)."""
    name = dataset_name(cfg)
    check_mnist_files(raw_folder(str(cfg.data.data_dir), name), download=bool(cfg.data.get("download", False)), name=name)


def positive_int(cfg: DictConfig, key: str, what: str) -> int:
    """A task's setting that must be a positive integer (a count or a size), or a one-line refusal."""
    value = cfg.get(key)
    if not is_positive_int(value):
        raise UserError(f"{key}={value!r} is invalid: it must be a positive integer ({what})")
    return int(value)


def positive_number(cfg: DictConfig, key: str, what: str) -> float:
    """A task's setting that must be a positive number, or a one-line refusal."""
    value = cfg.get(key)
    if not _number(lambda v: v > 0)(value):
        raise UserError(f"{key}={value!r} is invalid: it must be a positive number ({what})")
    return float(value)


def check_output_path(key: str, path: Path) -> None:
    """A file a task will write: refused now if a file stands where one of its folders must be
    (the folders themselves are made when it is written)."""
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise UserError(f"{key}={path} cannot be written: {folder} is a file, not a folder: choose another {key}")
            return


def required(cfg: DictConfig, key: str, what: str) -> str:
    """A task's input that has no default (``???`` in its YAML), or a one-line refusal."""
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise UserError(f"task={cfg.task_name} needs {key}=<{what}>: add it to the command line")
    return str(cfg[key])
