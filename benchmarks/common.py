"""Shared set-up for the benchmark scripts: the project's own config, data and timing helpers."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from mnist_budget.checkpoints import dataset_of, load_network
from mnist_budget.hardware import describe, flush_denormals, hardware_line, run_settings
from mnist_budget.models import build_network
from mnist_budget.training.optim import build_optimizer, build_scheduler

ROOT = Path(__file__).resolve().parents[1]


def mnist_network(checkpoint: str | Path) -> tuple[torch.nn.Module, dict]:
    """A checkpoint's network and hyper-parameters, refused in one line unless it learnt MNIST:
    these benchmarks feed it MNIST's test digits, or digits made like them."""
    net, hparams = load_network(checkpoint)
    if dataset_of(hparams).name != "mnist":
        raise SystemExit(
            f"error: {checkpoint} was trained on {dataset_of(hparams).name}: give a checkpoint of an MNIST run"
        )
    return net, hparams


def data_dir() -> str:
    """The data folder as a run finds it: conf/paths/default.yaml holds the one rule
    (``MNIST_BUDGET_DATA``, else ./data)."""
    return str(OmegaConf.load(ROOT / "conf" / "paths" / "default.yaml").data_dir)


def project_config(*overrides: str) -> DictConfig:
    """The config ``run.py`` would compose, plus ``overrides`` (the benchmark's own, then the command
    line's: later ones win). Like run.py, it applies ``flush_denormal`` before anything trains."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"paths.data_dir={data_dir()}", "paths.output_dir=/tmp/mnist-budget-bench", *overrides],
        )
    flush_denormals(bool(cfg.flush_denormal))
    return cfg


SMOKE_HELP = "a smoke run: the smallest measurement that still runs every step (seconds, figures meaningless)"


def argument_parser(doc: str, overrides: bool = True) -> argparse.ArgumentParser:
    """The benchmark's command line: ``--smoke`` and (``overrides``) any Hydra overrides, in any order."""
    parser = argparse.ArgumentParser(
        description=doc, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    if overrides:
        parser.add_argument(
            "overrides",
            nargs="*",
            metavar="OVERRIDE",
            help="Hydra overrides of the project config, e.g. model=record_8k",
        )
    return parser


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# Steady-state training throughput: WARMUP batches untimed, then STEPS timed batches
# (a smoke run: SMOKE_WARMUP and SMOKE_STEPS).
WARMUP, STEPS = 15, 120
SMOKE_WARMUP, SMOKE_STEPS = 0, 1


def steady_state_overrides(warmup: int = WARMUP, steps: int = STEPS) -> tuple[str, ...]:
    """One epoch of ``warmup + steps`` training batches, no validation, no checkpoints, no summary."""
    return (
        f"trainer.limit_train_batches={warmup + steps}",
        "trainer.limit_val_batches=0",
        "trainer.max_epochs=1",
        "~callbacks.model_checkpoint",
        "~callbacks.last_checkpoint",
        "~callbacks.model_summary",
    )


STEADY_STATE_OVERRIDES = steady_state_overrides()


class StepTimer(Callback):
    """Times training batches ``warmup`` .. ``warmup + steps - 1`` (fixed costs and warm-up excluded)."""

    def __init__(self, warmup: int = WARMUP, steps: int = STEPS) -> None:
        self.warmup, self.steps = warmup, steps
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.warmup + self.steps - 1:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self._start


def plain_loop_rate(
    module,
    batches: Iterable,
    prepare: Callable,
    *,
    channels_last: bool,
    bf16: bool,
    compile_: bool | str = False,
    warmup: int = WARMUP,
    steps: int = STEPS,
    schedule_steps: int | None = None,
    backend: str = "inductor",
) -> float:
    """Images/s of a hand-written training loop (no Lightning) over ``batches`` of raw images and
    labels: ``warmup`` batches untimed, then ``steps`` timed ones.

    ``prepare`` augments and normalises a batch; the levers match the project's: channels-last
    layout, bf16 autocast, and (optionally) torch.compile (``compile_``: True for its default mode,
    or a torch.compile mode; ``backend``: torch.compile's), in place as ``callbacks.compile`` does.
    ``schedule_steps``: the optimiser steps of the whole run, for which the config's learning-rate
    schedule is built and stepped after every step, as the project's per-step schedules are (None:
    the optimiser's constant learning rate).
    """
    device = next(module.parameters()).device
    if channels_last:
        module.to(memory_format=torch.channels_last)
    if compile_:
        module.net.compile(mode="default" if compile_ is True else compile_, backend=backend)
    forward = module.net
    optimizer = build_optimizer(module.hparams.optim, module.parameters())
    scheduler = build_scheduler(module.hparams.optim, optimizer, lambda: schedule_steps) if schedule_steps else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    images_seen = 0
    for i, (images, labels) in enumerate(batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, images_seen = time.perf_counter(), 0
        if i == warmup + steps:
            break
        with autocast:
            loss = module.criterion(forward(prepare(images)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        images_seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images_seen / (time.perf_counter() - start)


def alternate(
    rounds: int, a: tuple[str, Callable[[], float]], b: tuple[str, Callable[[], float]]
) -> tuple[float, float]:
    """Measure A then B, ``rounds`` times over, printing each round; return the two medians."""
    results: dict[str, list[float]] = {a[0]: [], b[0]: []}
    for round_ in range(rounds):
        for name, measure in (a, b):
            results[name].append(measure())
        print(f"round {round_ + 1}: " + " | ".join(f"{n} {v[-1]:8.0f} img/s" for n, v in results.items()), flush=True)
    return median(results[a[0]]), median(results[b[0]])


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_on_device(datamodule) -> None:
    """Set the datamodule up outside a trainer, its splits on the GPU when there is one (as a run there does)."""
    datamodule.load_splits(default_device())


def training_flops_per_image(cfg: DictConfig, batch: int = 64) -> float:
    """FLOPs (2 per multiply-add) of one training step per image: the network's forward and
    backward pass as torch's FlopCounterMode counts them (convolutions and matrix products;
    BatchNorm, ReLU, pooling and the optimiser are not counted, though they take time)."""
    net = build_network(cfg.model.net, cfg.model.name).train()
    images = torch.randn(batch, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        net(images).sum().backward()
    return counter.get_total_flops() / batch


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of a large square matrix product on the benchmark's device, in ``dtype``: the most
    these cores (or this GPU) do in practice, the yardstick for a training run's GFLOP/s."""
    device = default_device()
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up: oneDNN / cuBLAS pick their kernels
    runs, start = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < seconds:
        a @ b
        runs += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
    return 2 * size**3 * runs / (time.perf_counter() - start) / 1e9


def compute_note(cfg: DictConfig, images_per_second: float, smoke: bool = False, flops: float | None = None) -> str:
    """One line: the GFLOP/s a run achieved (network FLOPs per trained image x images/s) beside the
    measured matrix-product peak of the same device in fp32, and in bf16 where the run uses it.
    ``flops``: ``training_flops_per_image(cfg)`` where the caller has it already."""
    flops = training_flops_per_image(cfg) if flops is None else flops
    achieved = flops * images_per_second / 1e9
    seconds = 0.05 if smoke else 1.0
    peaks = {"fp32": matmul_peak_gflops(torch.float32, seconds=seconds)}
    if run_settings(cfg).precision.startswith("bf16"):
        peaks["bf16"] = matmul_peak_gflops(torch.bfloat16, seconds=seconds)
    shares = ", ".join(f"{name} {peak:.0f} GFLOP/s ({100 * achieved / peak:.1f} %)" for name, peak in peaks.items())
    return (
        f"compute: {flops / 1e6:.2f} MFLOP per trained image x {images_per_second:.0f} images/s = "
        f"{achieved:.1f} GFLOP/s; a 2048x2048 matrix product here: {shares}"
    )


def device_note(cfg: DictConfig | None = None) -> str:
    """The hardware line every benchmark prints, with the precision and layout the config resolves to."""
    device = default_device().type
    note = f"hardware: {hardware_line(describe(device))}"
    if cfg is not None:
        settings = run_settings(cfg)
        note += f"\nmodel {cfg.model.name}; precision {settings.precision}; layout {settings.layout}"
    return note
