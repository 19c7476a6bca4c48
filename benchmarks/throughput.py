"""Train throughput (images/s): the classic MNIST pipeline against the project's Lightning path.

Same model (the default, or model=...), same kind of augmentation (random rotation + translation),
same batch size.
  A (classic): torchvision MNIST with per-sample PIL transforms, DataLoader with 2 workers, plain
               fp32 loop: what an MNIST tutorial does.
  B (project): in-memory tensors, batched kornia augmentation, the project's Lightning trainer with
               the precision and layout it chooses for this machine (printed).
A and B alternate ROUNDS times in one process so machine noise cancels; medians and B/A are printed.

    uv run python benchmarks/throughput.py [hydra overrides, e.g. data.batch_size=256]
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
    STEADY_STATE_OVERRIDES,
    STEPS,
    WARMUP,
    StepTimer,
    alternate,
    data_dir,
    default_device,
    device_note,
    project_config,
)
from mnist_budget.mnist_files import MNIST_MEAN, MNIST_STD
from mnist_budget.module import Classifier
from mnist_budget.tasks.train import build_datamodule, build_trainer

ROUNDS = 3


def project_round(cfg) -> float:
    timer = StepTimer()
    trainer = build_trainer(cfg, timer)
    trainer.fit(Classifier.from_config(cfg), datamodule=build_datamodule(cfg))
    return STEPS * cfg.data.batch_size / timer.seconds


def classic_round(cfg) -> float:
    affine = cfg.augment._args_[0]  # the same rotation and translation ranges, as PIL transforms
    transform = T.Compose(
        [
            T.RandomAffine(degrees=affine.degrees, translate=tuple(affine.translate)),
            T.ToTensor(),
            T.Normalize((MNIST_MEAN,), (MNIST_STD,)),
        ]
    )
    loader = DataLoader(
        MNIST(data_dir(), train=True, transform=transform), batch_size=cfg.data.batch_size, shuffle=True, num_workers=2
    )
    device = default_device()
    net = instantiate(cfg.model.net).train().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
    for i, (images, labels) in enumerate(loader):
        if i == WARMUP:
            start = time.perf_counter()
        if i == WARMUP + STEPS:
            break
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return STEPS * cfg.data.batch_size / (time.perf_counter() - start)


def main() -> None:
    cfg = project_config("augment=standard", *STEADY_STATE_OVERRIDES)
    L.seed_everything(0, verbose=False)
    a, b = alternate(ROUNDS, ("classic", lambda: classic_round(cfg)), ("project", lambda: project_round(cfg)))
    print(f"\n{device_note(cfg)}; batch {cfg.data.batch_size}, {STEPS} timed steps per round, {ROUNDS} rounds")
    print(f"classic pipeline (A): {a:8.0f} images/s (median)")
    print(f"project (B):          {b:8.0f} images/s (median)")
    print(f"B/A = {b / a:.2f}x")


if __name__ == "__main__":
    main()
