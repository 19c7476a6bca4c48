"""Lightning's cost: the project's Lightning loop against a plain PyTorch loop over the same data.

Both loops use the same in-memory batches (the datamodule's loader), the same kornia augmentation
and normalisation, the same network and optimiser. Alternating rounds; medians and the ratio.

    uv run python benchmarks/lightning_overhead.py [hydra overrides]
"""

from __future__ import annotations

import time

import lightning as L
import torch

from common import device_note, median, project_config
from mnist_budget.module import Classifier
from mnist_budget.tasks.train import build_datamodule, build_trainer
from throughput import STEPS, WARMUP, StepTimer

ROUNDS = 5


def plain_round(cfg, datamodule) -> float:
    module = Classifier.from_config(cfg).train()
    net, criterion, optimizer = module.net, module.criterion, module.build_optimizer()
    for i, batch in enumerate(datamodule.train_dataloader()):
        if i == WARMUP:
            start = time.perf_counter()
        if i == WARMUP + STEPS:
            break
        images, labels = batch
        images = datamodule.prepare_images(images, augment=True)
        loss = criterion(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return STEPS * cfg.data.batch_size / (time.perf_counter() - start)


def lightning_round(cfg, datamodule) -> float:
    timer = StepTimer()
    build_trainer(cfg, timer).fit(Classifier.from_config(cfg), datamodule=datamodule)
    return STEPS * cfg.data.batch_size / timer.seconds


def main() -> None:
    cfg = project_config(
        f"trainer.limit_train_batches={WARMUP + STEPS}",
        "trainer.limit_val_batches=0",
        "trainer.max_epochs=1",
        "~callbacks.model_checkpoint",
        "~callbacks.early_stopping",
        "~callbacks.model_summary",
    )
    L.seed_everything(0, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    plain, lightning = [], []
    for round_ in range(ROUNDS):
        plain.append(plain_round(cfg, datamodule))
        lightning.append(lightning_round(cfg, datamodule))
        print(f"round {round_ + 1}: plain {plain[-1]:8.0f} img/s | lightning {lightning[-1]:8.0f} img/s", flush=True)
    a, b = median(plain), median(lightning)
    print(f"\n{device_note()}; batch {cfg.data.batch_size}, {STEPS} timed steps per round, {ROUNDS} rounds")
    print(f"plain PyTorch loop: {a:8.0f} images/s (median)")
    print(f"project Lightning:  {b:8.0f} images/s (median)")
    print(f"Lightning overhead: {100 * (a / b - 1):+.1f} % time per image (plain/lightning = {a / b:.3f})")


if __name__ == "__main__":
    main()
