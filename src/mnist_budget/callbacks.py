"""The project's own callbacks; everything else comes from Lightning (see conf/callbacks/)."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from mnist_budget.errors import UserError
from mnist_budget.hardware import resolve_layout
from mnist_budget.models import count_parameters
from mnist_budget.rng import capture_rng, restore_rng

log = logging.getLogger(__name__)


class ParameterBudget(Callback):
    """Counts trainable parameters before any step, logs them, and stops a model over its budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.params: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.params = count_parameters(pl_module.net)
        name = getattr(pl_module, "model_name", type(pl_module.net).__name__)
        if self.params > self.budget:
            raise UserError(
                f"model {name} has {self.params:,} trainable parameters, over its budget of {self.budget:,}: "
                "shrink the model or raise model.budget"
            )
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


class LastCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt``, rewritten after every validation and every few steps or seconds between.

    The one file a killed run resumes from (``ckpt_path=last``). Lightning's ModelCheckpoint with
    ``save_last`` and a step or time trigger, plus a save after each validation (Lightning allows
    only one trigger per callback), minus the step save on an epoch's last batch: the save after
    validation follows at once, and a checkpoint taken between the two would resume without that
    epoch's validation.
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

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RandomState(Callback):
    """Saves the random generators in every checkpoint and restores them when training resumes.

    Restored in ``on_train_start``: the training loader has then been set up (torch's DataLoader
    draws a number whenever it starts an iterator, and a resumed run starts one an uninterrupted
    run does not), and nothing that shapes training (shuffling, augmentation, dropout) has drawn.
    A run resumed mid-epoch continues that epoch's iterator; one resumed at an epoch's end starts
    the next epoch's iterator after this hook, as an uninterrupted run does after its save.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = dict(state_dict)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pending:
            restore_rng(self.pending)
            self.pending = None


class MemoryFormat(Callback):
    """Stores the network's 4-D weights (and so its activations) in the layout chosen for the device.

    ``layout``: ``channels_last`` (NHWC), ``contiguous`` (NCHW) or ``auto``, which
    ``mnist_budget.hardware.resolve_layout`` turns into channels_last on a CUDA GPU and contiguous
    on a CPU (see the README's Performance section for the measurements behind the rule).
    """

    def __init__(self, layout: str = "auto") -> None:
        self.requested = layout
        self.layout: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.layout = resolve_layout(self.requested, trainer.strategy.root_device.type)
        if self.layout == "channels_last":
            pl_module.to(memory_format=torch.channels_last)


class EpochHistory(Callback):
    """Records one row of metrics per epoch (for results.json and the plot) and prints it as a table."""

    METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self._epoch_start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()  # a resumed run starts timing mid-epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs the epoch's validation before this hook, so val/* are this epoch's.
        metrics = trainer.callback_metrics
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1}
        row.update({key: float(metrics[key]) for key in self.METRICS if key in metrics})
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        row["seconds"] = time.perf_counter() - self._epoch_start
        self.history.append(row)
        if len(self.history) == 1:
            log.info("epoch | train loss  acc    | val loss  acc    | lr       | seconds")
        log.info(
            "%5d | %10.4f %6.2f%% | %8.4f %6.2f%% | %.2e | %6.1f",
            row["epoch"],
            row.get("train/loss", float("nan")),
            100 * row.get("train/acc", float("nan")),
            row.get("val/loss", float("nan")),
            100 * row.get("val/acc", float("nan")),
            row["lr"] or float("nan"),
            row["seconds"],
        )

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}  # plain floats: resumable and weights_only-safe

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
