"""Speed levers, one at a time, on the same training step: images/s of a plain loop over the
project's in-memory data path (the default model, or model=..., with standard augmentation) on
this machine's device.

Levers: batch size, channels_last, thread count, bf16 autocast, torch.compile. Each row is the
median of ROUNDS rounds; every lever is measured against a baseline measured in the same rounds.

    uv run python benchmarks/levers.py [--compile] [--smoke] [hydra overrides]

``--smoke``: one round, one timed batch per lever, no warm-up (a check that it runs).
"""

from __future__ import annotations

import lightning as L
import torch

from common import (
    SMOKE_STEPS,
    SMOKE_WARMUP,
    STEPS,
    WARMUP,
    argument_parser,
    compute_note,
    device_note,
    load_on_device,
    median,
    plain_loop_rate,
    project_config,
    training_flops_per_image,
)
from mnist_budget.training.builders import build_datamodule
from mnist_budget.training.module import Classifier

ROUNDS = 3


def shuffled_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    order = torch.randperm(len(labels), device=images.device)
    for chunk in range(0, len(labels) - batch_size + 1, batch_size):
        idx = order[chunk : chunk + batch_size]
        yield images[idx], labels[idx]


def step_rate(
    cfg, datamodule, batch_size: int, channels_last=False, bf16=False, compile_=False, warmup=WARMUP, steps=STEPS
) -> float:
    images, labels = datamodule.splits["train"].tensors
    return plain_loop_rate(
        Classifier.from_config(cfg).train().to(images.device),
        shuffled_batches(images, labels, batch_size),
        lambda batch: datamodule.prepare_images(batch, augment=True),
        channels_last=channels_last,
        bf16=bf16,
        compile_=compile_,
        warmup=warmup,
        steps=steps,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row")
    args = parser.parse_intermixed_args(argv)
    use_compile = args.compile
    rounds, warmup, steps = (1, SMOKE_WARMUP, SMOKE_STEPS) if args.smoke else (ROUNDS, WARMUP, STEPS)
    cfg = project_config(*args.overrides)
    L.seed_everything(0, verbose=False)
    datamodule = build_datamodule(cfg)
    load_on_device(datamodule)
    threads = torch.get_num_threads()
    batch = cfg.data.batch_size
    levers = {
        f"baseline (batch {batch}, fp32, NCHW, {threads} threads)": {},
        f"batch {batch // 2}": {"batch_size": batch // 2},
        f"batch {batch * 2}": {"batch_size": batch * 2},
        "channels_last": {"channels_last": True},
        "bf16 autocast": {"bf16": True},
        "channels_last + bf16 autocast": {"channels_last": True, "bf16": True},
        "1 thread": {"threads": 1},
    }
    if use_compile:
        levers["torch.compile"] = {"compile_": True}
    rates: dict[str, list[float]] = {name: [] for name in levers}
    for _ in range(rounds):
        for name, lever in levers.items():
            lever = dict(lever)
            torch.set_num_threads(lever.pop("threads", threads))
            rates[name].append(
                step_rate(cfg, datamodule, lever.pop("batch_size", batch), **lever, warmup=warmup, steps=steps)
            )
        torch.set_num_threads(threads)
    print(f"\n{device_note(cfg)}; {steps} timed steps, median of {rounds} rounds")
    base = median(rates[next(iter(levers))])
    flops = training_flops_per_image(cfg)
    for name, values in rates.items():
        rate = median(values)
        print(f"{name:45s} {rate:8.0f} images/s  ({rate / base:.2f}x)  {rate * flops / 1e9:6.1f} GFLOP/s")
    fastest = max(median(values) for values in rates.values())
    print(compute_note(cfg, fastest, smoke=args.smoke, flops=flops) + " (fastest row)")


if __name__ == "__main__":
    main()
