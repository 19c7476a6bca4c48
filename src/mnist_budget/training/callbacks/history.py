"""The run's record: one row per epoch (for results.json, the plot and the console table) and the
training clock."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


class EpochHistory(Callback):
    """Records one row of metrics per epoch (for results.json and the plot), prints it as a table,
    and keeps the run's training seconds across resumes (``train_seconds``).

    The clock runs from the training loop's start to its end, so neither the processes' start
    (DDP), the data loading nor the sanity check count as training, and a resumed run adds its
    time to what the checkpoint says the run had trained.
    """

    METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.seconds_before = 0.0  # trained before this fit call started (a resumed run's earlier part)
        self._fit_start: float | None = None
        self._epoch_start = 0.0
        self._validated_epoch = -1  # the last epoch whose validation ran (trainer.check_val_every_n_epoch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    @property
    def train_seconds(self) -> float:
        """Seconds of training so far, earlier parts of a resumed run included."""
        running = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return self.seconds_before + running

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = self._epoch_start = time.perf_counter()  # a resumed run starts timing mid-epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds_before, self._fit_start = self.train_seconds, None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs the epoch's validation before this hook, so val/* are this epoch's; in an
        # epoch without validation they would be an earlier epoch's, and are left out.
        metrics = trainer.callback_metrics
        validated = self._validated_epoch == trainer.current_epoch
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1}
        row.update(
            {
                key: float(metrics[key])
                for key in self.METRICS
                if key in metrics and (validated or not key.startswith("val/"))
            }
        )
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
        # Plain floats: resumable and weights_only-safe.
        return {"history": self.history, "train_seconds": self.train_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        # A checkpoint written before the clock was saved: its epochs' seconds are the best estimate.
        earlier = sum(row.get("seconds", 0.0) for row in self.history)
        self.seconds_before = float(state_dict.get("train_seconds", earlier))
