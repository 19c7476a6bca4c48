"""Lightning's cost: the project's Lightning loop against a plain PyTorch loop over the same data.

Both loops use the same in-memory batches (the datamodule's loader), the same augmentation (the
config's augment group: by default mnist_budget.data.augment.RandomShiftRotate, a batched per-image
rotation and shift) and normalisation, the same network and optimiser. Alternating rounds;
medians and the ratio.

    uv run python benchmarks/lightning_overhead.py [--smoke] [hydra overrides]

``--smoke``: one round, one timed batch each, no warm-up (a check that it runs).
"""

from __future__ import annotations

import lightning as L

from common import (
    SMOKE_STEPS,
    SMOKE_WARMUP,
    STEPS,
    WARMUP,
    StepTimer,
    alternate,
    argument_parser,
    default_device,
    device_note,
    load_on_device,
    plain_loop_rate,
    project_config,
    steady_state_overrides,
)
from mnist_budget.hardware import run_settings
from mnist_budget.training.builders import build_datamodule, build_trainer
from mnist_budget.training.module import Classifier

ROUNDS = 7


def plain_round(cfg, datamodule, warmup: int = WARMUP, steps: int = STEPS) -> float:
    """The same step by hand, with the precision and memory layout that the project's run resolves to."""
    settings = run_settings(cfg)
    return plain_loop_rate(
        Classifier.from_config(cfg).train().to(default_device()),
        datamodule.train_dataloader(),
        lambda images: datamodule.prepare_images(images, augment=True),
        channels_last=settings.layout == "channels_last",
        bf16=settings.precision.startswith("bf16"),
        warmup=warmup,
        steps=steps,
    )


def lightning_round(cfg, datamodule, warmup: int = WARMUP, steps: int = STEPS) -> float:
    timer = StepTimer(warmup, steps)
    build_trainer(cfg, timer).fit(Classifier.from_config(cfg), datamodule=datamodule)
    return steps * cfg.data.batch_size / timer.seconds


def main(argv: list[str] | None = None) -> None:
    args = argument_parser(__doc__).parse_intermixed_args(argv)
    rounds, warmup, steps = (1, SMOKE_WARMUP, SMOKE_STEPS) if args.smoke else (ROUNDS, WARMUP, STEPS)
    cfg = project_config(*steady_state_overrides(warmup, steps), *args.overrides)
    L.seed_everything(0, verbose=False)
    datamodule = build_datamodule(cfg)
    load_on_device(datamodule)
    a, b = alternate(
        rounds,
        ("plain", lambda: plain_round(cfg, datamodule, warmup, steps)),
        ("lightning", lambda: lightning_round(cfg, datamodule, warmup, steps)),
    )
    print(f"\n{device_note(cfg)}; batch {cfg.data.batch_size}, {steps} timed steps per round, {rounds} rounds")
    print(f"plain PyTorch loop: {a:8.0f} images/s (median)")
    print(f"project Lightning:  {b:8.0f} images/s (median)")
    print(f"Lightning overhead: {100 * (a / b - 1):+.1f} % time per image (plain/lightning = {a / b:.3f})")


if __name__ == "__main__":
    main()
