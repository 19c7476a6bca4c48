"""The checkpoint files a run writes for resuming: ``checkpoints/last.ckpt``, rewritten often
enough (``LastCheckpoint``) and always whole (``AtomicCheckpointIO``). Which checkpoint a run
resumes from, and whether it fits the run: mnist_budget.checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mnist_budget.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its target and renames it into place (mnist_budget.files).

    A run killed while saving leaves the previous ``last.ckpt`` whole; Lightning's own writer
    stages the file in the system temp folder, which is often another file system, where the final
    move is a copy that a kill can cut short. A disk that is full or read-only stops the run with
    one line naming the file (the previous one stays).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_write(path, what="the checkpoint ") as file:
            torch.save(checkpoint, file)


class LastCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt``, rewritten after every validation and every few steps or seconds between.

    The one file a killed run resumes from (``ckpt_path=last``). Lightning's ModelCheckpoint with
    ``save_last`` and a step or time trigger, plus a save after each validation (Lightning allows
    only one trigger per callback, so that one goes through the public ``trainer.save_checkpoint``),
    minus the step save on an epoch's last batch: the save after validation follows at once, and a
    checkpoint taken between the two would resume without that epoch's validation.
    """

    def __init__(
        self, *args: Any, every_n_train_steps: int | None = None, train_time_interval: Any = None, **kwargs: Any
    ) -> None:
        # Lightning refuses both triggers at once; a step count given on the command line wins.
        if every_n_train_steps:
            train_time_interval = None
        super().__init__(
            *args, every_n_train_steps=every_n_train_steps, train_time_interval=train_time_interval, **kwargs
        )
        self.saved_at_step: int | None = None  # the global step of the last save after an epoch

    @property
    def path(self) -> Path | None:
        """The file it keeps rewriting (``checkpoints/last.ckpt`` as conf/callbacks/last_checkpoint.yaml sets it)."""
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}" if self.dirpath else None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx + 1 == trainer.num_training_batches:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self.save_last or self.path is None or trainer.sanity_checking or trainer.fast_dev_run:
            return
        self.last_model_path = str(self.path)  # before saving: it is part of the callback's saved state
        trainer.save_checkpoint(self.path, self.save_weights_only)
        self.saved_at_step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # ModelCheckpoint saves "last" once more at the end unless its own trigger saved it: the
        # save after the last epoch is that one already.
        if self.saved_at_step != trainer.global_step:
            super().on_train_end(trainer, pl_module)
