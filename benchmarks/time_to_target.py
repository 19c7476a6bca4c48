"""Time to target: wall seconds from the start of ``fit`` until the official test accuracy first
reaches 99.4 %, for the default config (or the overrides given).

The test set is evaluated after every epoch in this benchmark only; that evaluation is not
counted in the time. Training stops at the first epoch that reaches the target.

    uv run python benchmarks/time_to_target.py [hydra overrides]
"""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from common import device_note, project_config
from mnist_budget.module import Classifier
from mnist_budget.tasks.train import build_datamodule, build_trainer

TARGET = 0.994


class TestEveryEpoch(Callback):
    """After each epoch: official test accuracy, with the time it took kept off the clock."""

    def __init__(self, datamodule) -> None:
        self.datamodule = datamodule
        self.eval_seconds = 0.0
        self.rows: list[tuple[int, float, float]] = []
        self.start = time.perf_counter()
        self.first_batch_at: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_batch_at is None:  # fixed costs: data loading, model summary, sanity check
            self.first_batch_at = time.perf_counter() - self.start

    @torch.inference_mode()
    def test_accuracy(self, net: torch.nn.Module) -> float:
        images, labels = self.datamodule.splits["test"].tensors
        correct = 0
        for chunk in range(0, len(labels), 2000):
            x = self.datamodule.prepare_images(images[chunk : chunk + 2000], augment=False)
            correct += (net(x).argmax(1) == labels[chunk : chunk + 2000]).sum().item()
        return correct / len(labels)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        paused = time.perf_counter()
        elapsed = paused - self.start - self.eval_seconds  # training time so far, earlier evaluations excluded
        pl_module.net.eval()
        accuracy = self.test_accuracy(pl_module.net)
        pl_module.net.train()
        self.eval_seconds += time.perf_counter() - paused
        self.rows.append((trainer.current_epoch + 1, elapsed, accuracy))
        print(f"epoch {trainer.current_epoch + 1}: test {100 * accuracy:.2f} % at {elapsed:.1f} s", flush=True)
        if accuracy >= TARGET:
            trainer.should_stop = True


def main() -> None:
    cfg = project_config("~callbacks.model_checkpoint")
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = build_datamodule(cfg)
    probe = TestEveryEpoch(datamodule)
    trainer = build_trainer(cfg, probe)
    probe.start = time.perf_counter()
    trainer.fit(Classifier.from_config(cfg), datamodule=datamodule)
    reached = [row for row in probe.rows if row[2] >= TARGET]
    print(f"\n{device_note(cfg)}")
    print(f"fixed costs before the first training batch (data, summary, sanity check): {probe.first_batch_at:.1f} s")
    if reached:
        epoch, seconds, accuracy = reached[0]
        print(f"reached {100 * accuracy:.2f} % test accuracy after {epoch} epochs, {seconds:.1f} s of training")
    else:
        epoch, seconds, accuracy = probe.rows[-1]
        print(f"did NOT reach {100 * TARGET:.1f} %: {100 * accuracy:.2f} % after {epoch} epochs, {seconds:.1f} s")


if __name__ == "__main__":
    main()
