"""The project's own callbacks; everything else comes from Lightning (see conf/callbacks/)."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mnist_budget.errors import UserError
from mnist_budget.hardware import resolve_layout
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


class MemoryFormat(Callback):
    """Stores the network's 4-D weights (and so its activations) in the layout chosen for the device.

    ``layout``: ``channels_last`` (NHWC), ``contiguous`` (NCHW) or ``auto``, which
    ``mnist_budget.hardware.resolve_layout`` turns into channels_last on a CPU or a CUDA GPU and
    contiguous elsewhere (docs/performance.md has the measurements behind the rule).
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
        self._validated_epoch = -1  # the last epoch whose validation ran (trainer.check_val_every_n_epoch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()  # a resumed run starts timing mid-epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs the epoch's validation before this hook, so val/* are this epoch's; in an
        # epoch without validation they would be an earlier epoch's, and are left out.
        metrics = trainer.callback_metrics
        validated = self._validated_epoch == trainer.current_epoch
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1}
        row.update({key: float(metrics[key]) for key in self.METRICS if key in metrics and (validated or not key.startswith("val/"))})
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        row["seconds"] = time.perf_counter() - self._epoch_start
        self.history.append(row)
        if len(self.history) == 1:
            log.info("epoch | train loss  acc    | val loss  acc    | lr       | seconds")
        val = f"{row['val/loss']:8.4f} {100 * row['val/acc']:6.2f}%" if "val/acc" in row else f"{'-':>8s} {'-':>7s}"
        log.info(
            "%5d | %10.4f %6.2f%% | %s | %.2e | %6.1f",
            row["epoch"],
            row.get("train/loss", float("nan")),
            100 * row.get("train/acc", float("nan")),
            val,
            row["lr"] or float("nan"),
            row["seconds"],
        )

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}  # plain floats: resumable and weights_only-safe

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
