"""Inference speed per format: eager PyTorch (fp32), ONNX Runtime, and the torch.export program.

Exports the checkpoint's network with the export task's own functions, then times each format on
real test images: batch 1 (p50 and p99 latency of single calls) and batch 1,024 (images/s).

    uv run python benchmarks/export_formats.py CKPT [--calls 2000] [--rounds 30] [--smoke]

The test images come from the data folder a run uses (MNIST_BUDGET_DATA, else ./data).
``--smoke``: 5 single calls after a warm-up of 2, one batch-1,024 round (a check that it runs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import SMOKE_HELP, data_dir, device_note, mnist_network
from mnist_budget.data.loading import load_mnist, to_float_images
from mnist_budget.data.sets import normalise
from mnist_budget.inference.classify import Logits
from mnist_budget.inference.export import export_onnx, export_pt2, onnx_runner, pt2_runner


@torch.inference_mode()
def latency_ms(run: Logits, images: torch.Tensor, calls: int, warmup: int = 50) -> tuple[float, float]:
    """p50 and p99 of single-image calls, after a warm-up of ``warmup`` calls."""
    for i in range(warmup):
        run(images[i : i + 1])
    times = []
    for i in range(calls):
        one = images[i % len(images) : i % len(images) + 1]
        start = time.perf_counter()
        run(one)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.percentile(times, 50)), 1e3 * float(np.percentile(times, 99))


@torch.inference_mode()
def throughput(run: Logits, images: torch.Tensor, rounds: int, batch: int = 1024) -> float:
    """Images per second at ``batch``, the median round of ``rounds``."""
    chunk = images[:batch]
    run(chunk)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(chunk)
        rates.append(batch / (time.perf_counter() - start))
    return float(np.median(rates))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP + "; overrides --calls and --rounds")
    args = parser.parse_args(argv)
    warmup = 50
    if args.smoke:
        args.calls, args.rounds, warmup = 5, 1, 2
    print(device_note())
    net, hparams = mnist_network(args.checkpoint)
    images, _ = load_mnist(Path(data_dir()), train=False)
    inputs = normalise(to_float_images(images))
    folder = Path(tempfile.mkdtemp(prefix="export-formats-"))
    export_onnx(net, folder / "model.onnx")
    export_pt2(net, folder / "model.pt2")
    runners = {
        "eager PyTorch (fp32)": net,
        "ONNX Runtime": onnx_runner(folder / "model.onnx", threads=torch.get_num_threads()),
        "torch.export program (.pt2)": pt2_runner(folder / "model.pt2"),
    }
    print(f"model {hparams['model']['name']}; {torch.get_num_threads()} threads")
    print("| format | batch 1: p50 ms | batch 1: p99 ms | batch 1,024: images/s | vs eager |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = None
    for name, run in runners.items():
        p50, p99 = latency_ms(run, inputs, args.calls, warmup)
        rate = throughput(run, inputs, args.rounds)
        base = base or rate
        print(f"| {name} | {p50:.3f} | {p99:.3f} | {rate:,.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
