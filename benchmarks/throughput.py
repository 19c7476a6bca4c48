"""Train throughput (images/s): the classic MNIST pipeline against the project's Lightning path.

Same model (the default, or model=...), same kind of augmentation (random rotation + translation),
same batch size.
  A (classic): torchvision MNIST with per-sample PIL transforms, DataLoader with 2 workers, plain
               fp32 loop: what an MNIST tutorial does.
  B (project): in-memory tensors, batched augmentation on the device (augment=standard:
               mnist_budget.data.augment.RandomShiftRotate, each image its own rotation and shift), the
               project's Lightning trainer with the precision and layout it chooses for this
               machine (printed).
A and B alternate ROUNDS times in one process so machine noise cancels; medians and B/A are printed.

    uv run python benchmarks/throughput.py [--smoke] [hydra overrides, e.g. data.batch_size=256]

``--smoke``: one round, one timed batch each, no warm-up (a check that it runs).
"""

from __future__ import annotations

import time

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.datasets import MNIST

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
    project_config,
    steady_state_overrides,
)
from mnist_budget.data.sets import MNIST_MEAN, MNIST_STD
from mnist_budget.training.builders import build_datamodule, build_trainer
from mnist_budget.training.module import Classifier

ROUNDS = 3


def project_round(cfg, warmup: int = WARMUP, steps: int = STEPS) -> float:
    timer = StepTimer(warmup, steps)
    trainer = build_trainer(cfg, timer)
    trainer.fit(Classifier.from_config(cfg), datamodule=build_datamodule(cfg))
    return steps * cfg.data.batch_size / timer.seconds


def classic_round(cfg, warmup: int = WARMUP, steps: int = STEPS) -> float:
    affine = cfg.augment._args_[0]  # the same rotation and translation ranges, as PIL transforms
    transform = T.Compose(
        [
            T.RandomAffine(degrees=affine.degrees, translate=tuple(affine.translate)),
            T.ToTensor(),
            T.Normalize((MNIST_MEAN,), (MNIST_STD,)),
        ]
    )
    loader = DataLoader(
        MNIST(cfg.paths.data_dir, train=True, transform=transform),
        batch_size=cfg.data.batch_size,
        shuffle=True,
        num_workers=2,
    )
    device = default_device()
    net = instantiate(cfg.model.net).train().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
    for i, (images, labels) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        if i == warmup + steps:
            break
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    args = argument_parser(__doc__).parse_intermixed_args(argv)
    rounds, warmup, steps = (1, SMOKE_WARMUP, SMOKE_STEPS) if args.smoke else (ROUNDS, WARMUP, STEPS)
    cfg = project_config("augment=standard", *steady_state_overrides(warmup, steps), *args.overrides)
    L.seed_everything(0, verbose=False)
    a, b = alternate(
        rounds,
        ("classic", lambda: classic_round(cfg, warmup, steps)),
        ("project", lambda: project_round(cfg, warmup, steps)),
    )
    print(f"\n{device_note(cfg)}; batch {cfg.data.batch_size}, {steps} timed steps per round, {rounds} rounds")
    print(f"classic pipeline (A): {a:8.0f} images/s (median)")
    print(f"project (B):          {b:8.0f} images/s (median)")
    print(f"B/A = {b / a:.2f}x")


if __name__ == "__main__":
    main()
