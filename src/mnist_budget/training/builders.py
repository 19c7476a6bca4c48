"""The run's components built from the composed config: data module, trainer, callbacks, loggers.

Shared by every task that trains or tests (train, eval) and by the benchmarks, so that all of
them run the same pipeline.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelSummary, ProgressBar, TQDMProgressBar
from omegaconf import DictConfig

from mnist_budget.console import route_library_logs
from mnist_budget.data.datamodule import MNISTDataModule
from mnist_budget.hardware import RunSettings, run_settings
from mnist_budget.training.callbacks import AtomicCheckpointIO

route_library_logs()  # Lightning, imported just now, gave its logger a console handler of its own

# Trainer switches and the callbacks they turn off.
SWITCHED_CALLBACKS = {
    "enable_progress_bar": ProgressBar,
    "enable_model_summary": ModelSummary,
    "enable_checkpointing": ModelCheckpoint,
}


def instantiate_group(group: DictConfig | None, **extra: Any) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger); ``null`` entries are
    off, and so is an entry whose factory returns ``None`` (a progress bar with no terminal)."""
    if not group:
        return []
    built = [
        instantiate(entry, **extra.get(name, {})) for name, entry in group.items() if entry and "_target_" in entry
    ]
    return [component for component in built if component is not None]


def build_loggers(cfg: DictConfig, resume_step: int | None = None) -> list[Any]:
    """The logger group; a resumed TensorBoard log drops what the killed run wrote after its checkpoint.

    ``purge_step`` (passed on to TensorBoard's SummaryWriter) hides events at or after that step
    in the earlier event files of the same folder, so the resumed run's steps replace them.
    """
    loggers = cfg.get("logger") or {}
    purge = {
        name: {"purge_step": resume_step}
        for name, entry in loggers.items()
        if resume_step is not None and entry and str(entry.get("_target_", "")).endswith("TensorBoardLogger")
    }
    return instantiate_group(loggers, **purge)


def build_datamodule(cfg: DictConfig, training: bool = True) -> MNISTDataModule:
    """The data config, with the augment group's pipeline (if any) plugged in; ``training=False``
    (testing a checkpoint): neither augmentation nor extra training digits."""
    if not training:
        return instantiate(cfg.data, augment=None, extra_train=None)
    return instantiate(cfg.data, augment=instantiate(cfg.augment) if cfg.get("augment") else None)


def progress_bar(refresh_rate: int = 20, show: bool | str = "auto") -> TQDMProgressBar | None:
    """Lightning's progress bar, on a terminal only with ``show: auto`` (none in CI logs or files)."""
    if show == "auto":
        show = sys.stderr.isatty()
    return TQDMProgressBar(refresh_rate=refresh_rate) if show and refresh_rate > 0 else None


def build_trainer(
    cfg: DictConfig, *extra_callbacks: Callback, settings: RunSettings | None = None, resume_step: int | None = None
) -> L.Trainer:
    """The trainer config with the callbacks and loggers groups (plus any callbacks given here).

    ``settings``: the run's device, precision and layout (``trainer.precision: auto`` resolved,
    see mnist_budget.hardware); checkpoints are written atomically (``AtomicCheckpointIO``).
    """
    settings = settings or run_settings(cfg)
    callbacks = [*extra_callbacks, *instantiate_group(cfg.get("callbacks"))]
    # Lightning's own switches (++trainer.enable_progress_bar=false, ...) win over the callbacks
    # group: Lightning refuses a progress bar callback when the bar is switched off.
    for switch, kind in SWITCHED_CALLBACKS.items():
        if cfg.trainer.get(switch, True) is False:
            callbacks = [callback for callback in callbacks if not isinstance(callback, kind)]
    # No bar in the callbacks (none wanted, or no terminal): Lightning must not add its default one.
    bar = any(isinstance(callback, ProgressBar) for callback in callbacks)
    return instantiate(
        cfg.trainer,
        precision=settings.precision,
        callbacks=callbacks,
        logger=build_loggers(cfg, resume_step),
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bar,
    )
