"""Speed levers, one at a time, on the same training step: images/s of a plain loop over the
project's in-memory data path (gap_cnn, standard augmentation) on this machine's device.

Levers: batch size, channels_last, thread count, bf16 autocast, torch.compile. Each row is the
median of ROUNDS rounds; every lever is measured against a baseline measured in the same rounds.

    uv run python benchmarks/levers.py [--compile] [hydra overrides]
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext

import lightning as L
import torch

from common import device_note, load_on_device, median, project_config
from mnist_budget.module import Classifier
from mnist_budget.tasks.train import build_datamodule

WARMUP, STEPS, ROUNDS = 10, 60, 3


def step_rate(cfg, datamodule, batch_size: int, channels_last=False, bf16=False, compile_=False) -> float:
    images, labels = datamodule.splits["train"].tensors
    module = Classifier.from_config(cfg).train().to(images.device)
    net = module.net.to(memory_format=torch.channels_last) if channels_last else module.net
    forward = torch.compile(net) if compile_ else net
    optimizer = module.build_optimizer()
    autocast = torch.autocast(images.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    order = torch.randperm(len(labels), device=images.device)
    for i in range(WARMUP + STEPS):
        if i == WARMUP:
            if images.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        idx = order[i * batch_size : (i + 1) * batch_size]
        x = datamodule.prepare_images(images[idx], augment=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = module.criterion(forward(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if images.is_cuda:
        torch.cuda.synchronize()
    return STEPS * batch_size / (time.perf_counter() - start)


def main() -> None:
    use_compile = "--compile" in sys.argv
    sys.argv = [arg for arg in sys.argv if arg != "--compile"]
    cfg = project_config()
    L.seed_everything(0, verbose=False)
    datamodule = build_datamodule(cfg)
    load_on_device(datamodule)
    threads = torch.get_num_threads()
    batch = cfg.data.batch_size
    levers = {
        f"baseline (batch {batch}, fp32, NCHW, {threads} threads)": {},
        "batch 128": {"batch_size": 128},
        "batch 512": {"batch_size": 512},
        "channels_last": {"channels_last": True},
        "bf16 autocast": {"bf16": True},
        "channels_last + bf16 autocast (project default)": {"channels_last": True, "bf16": True},
        "channels_last + bf16, 1 thread": {"channels_last": True, "bf16": True, "threads": 1},
    }
    if use_compile:
        levers["torch.compile"] = {"compile_": True}
    rates: dict[str, list[float]] = {name: [] for name in levers}
    for _ in range(ROUNDS):
        for name, lever in levers.items():
            lever = dict(lever)
            torch.set_num_threads(lever.pop("threads", threads))
            rates[name].append(step_rate(cfg, datamodule, lever.pop("batch_size", batch), **lever))
        torch.set_num_threads(threads)
    print(f"\n{device_note()}; {STEPS} timed steps, median of {ROUNDS} rounds")
    base = median(rates[next(iter(levers))])
    for name, values in rates.items():
        print(f"{name:45s} {median(values):8.0f} images/s  ({median(values) / base:.2f}x)")


if __name__ == "__main__":
    main()
