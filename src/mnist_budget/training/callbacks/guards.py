"""Callbacks that stop a run that cannot succeed: a network over its parameter budget (before the
first step), a loss that is no longer finite."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mnist_budget.errors import UserError
from mnist_budget.models import check_budget

log = logging.getLogger(__name__)


class ParameterBudget(Callback):
    """Counts trainable parameters before any step, logs them, and stops a model over its budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.params: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        name = getattr(pl_module, "model_name", type(pl_module.net).__name__)
        self.params = check_budget(pl_module.net, self.budget, name)
        if stage != "fit":
            return  # said once per run, before training
        log.info("model %s: %s trainable parameters (budget %s)", name, f"{self.params:,}", f"{self.budget:,}")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:  # logged once per run: not again when a run resumes
            for logger in trainer.loggers:
                logger.log_metrics({"model/params": self.params, "model/budget": self.budget}, step=0)


class FiniteLoss(Callback):
    """Stops the run at the first non-finite training loss, naming the epoch and step.

    Diverged weights only produce NaNs from then on; the checkpoints already written (the last
    good epoch's) stay as they are. Checking reads the loss back from the device, so on a GPU
    ``check_every_n_steps`` can space the checks out.
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.every = max(1, int(check_every_n_steps))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or trainer.global_step % self.every or bool(torch.isfinite(loss).all()):
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        raise UserError(
            f"the training loss became {float(loss.detach().float())} at epoch {trainer.current_epoch + 1}, "
            f"step {trainer.global_step} (learning rate {lr:.3g}): lower optim.lr or check optim.* "
            "(checkpoints written before this epoch are kept)"
        )
