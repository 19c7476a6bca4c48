"""Lightning's cost: the project's Lightning loop against a plain PyTorch loop over the same data.

Both loops use the same in-memory batches (the datamodule's loader), the same kornia augmentation
and normalisation, the same network and optimiser. Alternating rounds; medians and the ratio.

    uv run python benchmarks/lightning_overhead.py [hydra overrides]
"""

from __future__ import annotations

import lightning as L

from common import (
    STEADY_STATE_OVERRIDES,
    STEPS,
    StepTimer,
    alternate,
    default_device,
    device_note,
    load_on_device,
    plain_loop_rate,
    project_config,
)
from mnist_budget.module import Classifier
from mnist_budget.hardware import run_settings
from mnist_budget.tasks.train import build_datamodule, build_trainer

ROUNDS = 7


def plain_round(cfg, datamodule) -> float:
    """The same step by hand, with the precision and memory layout that the project's run resolves to."""
    _, precision, layout = run_settings(cfg)
    return plain_loop_rate(
        Classifier.from_config(cfg).train().to(default_device()),
        datamodule.train_dataloader(),
        lambda images: datamodule.prepare_images(images, augment=True),
        channels_last=layout == "channels_last",
        bf16=precision.startswith("bf16"),
    )


def lightning_round(cfg, datamodule) -> float:
    timer = StepTimer()
    build_trainer(cfg, timer).fit(Classifier.from_config(cfg), datamodule=datamodule)
    return STEPS * cfg.data.batch_size / timer.seconds


def main() -> None:
    cfg = project_config(*STEADY_STATE_OVERRIDES)
    L.seed_everything(0, verbose=False)
    datamodule = build_datamodule(cfg)
    load_on_device(datamodule)
    a, b = alternate(
        ROUNDS, ("plain", lambda: plain_round(cfg, datamodule)), ("lightning", lambda: lightning_round(cfg, datamodule))
    )
    print(f"\n{device_note(cfg)}; batch {cfg.data.batch_size}, {STEPS} timed steps per round, {ROUNDS} rounds")
    print(f"plain PyTorch loop: {a:8.0f} images/s (median)")
    print(f"project Lightning:  {b:8.0f} images/s (median)")
    print(f"Lightning overhead: {100 * (a / b - 1):+.1f} % time per image (plain/lightning = {a / b:.3f})")


if __name__ == "__main__":
    main()
