"""The rules of the project's own config keys, checked without torch or Lightning.

The command line checks them before Hydra writes anything (mnist_budget.tasks.preflight), and
each job of a sweep checks its own values again as it starts (mnist_budget.tasks.runner): the
preflight sees the first job's values only. A component checks its own constructor arguments where it is built, with the functions
here where a rule is shared (the data module's batch sizes and split: ``check_data_arguments``).
Rules that need a built object live beside it: a network's budget and shape
(mnist_budget.models.check_network), the augmentation's ranges (mnist_budget.data.augment), the
memory layout (mnist_budget.hardware).

A rule whose key is missing from the composed config is not checked (an optional callback that
is off); tests/test_validate.py fails when a rule's key exists in no shipped config, so that
renaming a key cannot switch its rule off unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_budget.errors import UserError

# What trainer.precision accepts: auto (mnist_budget.hardware picks) or one of Lightning's values
# (tests/test_validate.py compares this list with Lightning's own, so that it cannot fall behind).
PRECISIONS = (
    "auto",
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    "64",
    "32",
    "16",
    "bf16",
)

TRAIN_SIZE = 60_000  # images in MNIST's (and Fashion-MNIST's) official training set
# callbacks.compile (mnist_budget.training.callbacks.Compile): the modes it takes (null: no compile
# unless cuda_graphs asks for one) and the torch.compile backends (eager and aot_eager: tracing only,
# a quick check that the network compiles).
COMPILE_MODES = ("default", "max-autotune")
COMPILE_BACKENDS = ("inductor", "eager", "aot_eager")
EXPORT_FORMATS = ("onnx", "pt2", "web")  # task=export's format (mnist_budget.inference.export, .web)
SERVE_BACKENDS = ("torch", "onnx")  # task=serve's backend (mnist_budget.inference.serving)


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``: a sweep or a search)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def runs_on_slurm(launcher: Any) -> bool:
    """Whether a Hydra launcher config (``hydra.launcher``) submits its jobs to SLURM: submitit's
    SlurmLauncher or this project's subclass of it (conf/hydra/launcher/slurm.yaml, slurm_gpu.yaml)."""
    return str((launcher or {}).get("_target_", "")).endswith("SlurmLauncher")


SEARCH_SWEEPER = "hydra_plugins.mnist_budget_plugins.OptunaSearch"  # conf/hydra/sweeper/optuna_search.yaml


def runs_search(cfg: DictConfig) -> bool:
    """Whether a composed config runs the project's Optuna search (``hparams_search=<name>``)."""
    return OmegaConf.select(cfg, "hydra.sweeper._target_") == SEARCH_SWEEPER


def is_positive_int(value: object) -> bool:
    """An int of at least 1 (a bool is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_number(value: object, test: Callable[[float], bool] = lambda _: True) -> bool:
    """An int or a float (not a bool) for which ``test`` holds."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and test(value)


@dataclass(frozen=True)
class Rule:
    key: str  # dotted config key
    holds: Callable[[Any], bool]
    must: str  # what the value must be, for the message


RULES = (
    Rule("seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    Rule("threads", lambda v: v == "auto" or is_positive_int(v), "auto or a positive integer"),
    Rule("trainer.max_epochs", is_positive_int, "a positive integer"),
    Rule(
        "trainer.precision",
        lambda v: str(v) in PRECISIONS,
        "auto or one of Lightning's: 32-true, bf16-mixed, 16-mixed, 64-true, ...",
    ),
    Rule("optim.lr", lambda v: is_number(v, lambda x: x > 0), "a positive number"),
    Rule("optim.momentum", lambda v: is_number(v, lambda x: 0 <= x < 1), "in [0, 1)"),
    Rule("optim.weight_decay", lambda v: is_number(v, lambda x: x >= 0), "a number >= 0"),
    Rule("optim.label_smoothing", lambda v: is_number(v, lambda x: 0 <= x < 1), "in [0, 1)"),
    Rule("model.budget", is_positive_int, "a positive integer"),
    Rule("test_checkpoint", lambda v: v in ("best", "last"), "best or last"),
    Rule(
        "trainer.overfit_batches",
        lambda v: v == 0,
        "0: Lightning's overfitting swaps out the in-memory loader's sampler; use debug=overfit",
    ),
    Rule("unsure_below", lambda v: is_number(v, lambda x: 0 <= x <= 1), "a probability in [0, 1]"),
    Rule("tta", lambda v: isinstance(v, bool), "true or false"),
    Rule("eval_tta", lambda v: isinstance(v, bool), "true or false"),
    Rule(
        "distill.temperature",
        lambda v: is_number(v, lambda x: x > 0),
        "a positive number (1 leaves the teacher's probabilities as they are, more softens them)",
    ),
    Rule(
        "distill.weight",
        lambda v: is_number(v, lambda x: 0 <= x <= 1),
        "a share in [0, 1] (0: cross-entropy alone, 1: the teacher's term alone)",
    ),
    Rule("callbacks.ema.decay", lambda v: is_number(v, lambda x: 0 < x < 1), "in (0, 1)"),
    Rule(
        "callbacks.compile.mode",
        lambda v: v in COMPILE_MODES,
        f"null (no compile) or one of {', '.join(COMPILE_MODES)}",
    ),
    Rule("callbacks.compile.cuda_graphs", lambda v: isinstance(v, bool), "true or false"),
    Rule("callbacks.compile.backend", lambda v: v in COMPILE_BACKENDS, f"one of {', '.join(COMPILE_BACKENDS)}"),
    Rule("callbacks.early_stopping.stopping_threshold", lambda v: is_number(v, lambda x: 0 < x <= 1), "in (0, 1]"),
)


def check_config(cfg: DictConfig) -> None:
    """Raise a UserError for the first value that breaks a rule (see RULES), then check the data
    module's arguments (cheap: nothing is loaded)."""
    for rule in RULES:
        value = OmegaConf.select(cfg, rule.key, default=None)
        if value is not None and not rule.holds(value):
            raise UserError(f"{rule.key}={value!r} is invalid: it must be {rule.must}")
    check_early_stopping_can_stop(cfg)
    check_distill(cfg)
    data = cfg.get("data")
    if data is not None:
        check_data_arguments(data.get("batch_size"), data.get("eval_batch_size"), data.get("val_size"))
        if data.get("extra_train") is not None:
            check_extra_train_data_set(str(data.get("dataset", "mnist")))


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


def check_distill(cfg: DictConfig) -> None:
    """``distill=teacher`` needs the teacher's checkpoint, and a teacher needs that group's settings
    (``distill=none`` has none). The file itself is read by mnist_budget.tasks.checks (torch)."""
    distill = cfg.get("distill")
    if distill is None:
        return
    if OmegaConf.is_missing(distill, "teacher"):
        raise UserError(
            "distill=teacher needs distill.teacher=<a teacher run's checkpoints/last.ckpt>: add it to the command line"
        )
    if distill.get("teacher") not in (None, "") and "temperature" not in distill:
        raise UserError(
            f"distill.teacher={distill.teacher} without the distill group's temperature and weight: "
            "add distill=teacher to the command line"
        )
    if distill.get("teacher") not in (None, ""):
        check_checkpoint_file("distill.teacher", distill.teacher)


def check_checkpoint_file(key: str, path: str | Path) -> None:
    """The file a checkpoint setting (``key``) names exists: asked before torch is imported."""
    if not Path(path).is_file():
        raise UserError(f"{key}={path} does not exist: give the path of a .ckpt file from a run's checkpoints/")


def check_data_arguments(batch_size: int, eval_batch_size: int, val_size: int, total: int = TRAIN_SIZE) -> None:
    """The data module's arguments: batch sizes of at least 1, and a validation split that leaves
    training images (``total``: the training images there are)."""
    for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if not is_positive_int(value):
            raise UserError(f"data.{key}={value!r} is invalid: it must be a positive integer")
    check_val_size(val_size, total)


def check_extra_train_data_set(name: str) -> None:
    """Font digits (``extra_train=fonts``) are digits: another data set's classes (Fashion-MNIST's
    clothes) cannot take them."""
    if name != "mnist":
        raise UserError(
            f"extra_train=fonts draws digits, not {name} classes: train data={name} without it (data.extra_train=null)"
        )


def check_val_size(val_size: int, total: int) -> None:
    """A validation split must leave training images: 1 to ``total - 1`` of the ``total`` there are."""
    if not (is_positive_int(val_size) and val_size < total):
        raise UserError(f"data.val_size={val_size!r} is invalid: it must be an integer from 1 to {total - 1}")


def positive_int(cfg: DictConfig, key: str, what: str) -> int:
    """A task's setting that must be a positive integer (a count or a size), or a one-line refusal."""
    value = cfg.get(key)
    if not is_positive_int(value):
        raise UserError(f"{key}={value!r} is invalid: it must be a positive integer ({what})")
    return int(value)


def positive_number(cfg: DictConfig, key: str, what: str) -> float:
    """A task's setting that must be a positive number, or a one-line refusal."""
    value = cfg.get(key)
    if not is_number(value, lambda x: x > 0):
        raise UserError(f"{key}={value!r} is invalid: it must be a positive number ({what})")
    return float(value)


def required(cfg: DictConfig, key: str, what: str) -> str:
    """A task's input that has no default (``???`` in its YAML), or a one-line refusal."""
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise UserError(f"task={cfg.task_name} needs {key}=<{what}>: add it to the command line")
    return str(cfg[key])


def check_writable(key: str, path: Path, folder: bool = False) -> None:
    """A file (or, with ``folder``, a folder) that a run will create, ``key`` naming the setting:
    refused now if a file stands where one of its folders must be, or the nearest existing folder
    is not writable."""
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}={path} cannot be created: {existing} is a file, not a folder: choose another {key}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}={path} is not writable (no write permission on {existing}): choose another {key}")


def check_export_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"format={fmt} is not supported: use one of {', '.join(EXPORT_FORMATS)}")


def check_serve_settings(cfg: DictConfig) -> None:
    """task=serve's own keys: a known backend, a port number, at least one worker, positive limits."""
    if str(cfg.backend) not in SERVE_BACKENDS:
        raise UserError(f"backend={cfg.backend} is unknown: use {' or '.join(SERVE_BACKENDS)}")
    if not (is_positive_int(cfg.port) and cfg.port < 65536):
        raise UserError(f"port={cfg.port!r} is invalid: it must be an integer from 1 to 65535")
    positive_int(cfg, "workers", "server processes")
    positive_int(cfg, "max_body_bytes", "the largest request accepted, in bytes")
    positive_int(cfg, "max_files", "images per request")
