"""Shared set-up for the benchmark scripts: the project's own config, data and timing helpers."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> str:
    """MNIST_BUDGET_DATA, else ../shared/data beside the checkout, else ./data."""
    if os.environ.get("MNIST_BUDGET_DATA"):
        return os.environ["MNIST_BUDGET_DATA"]
    shared = ROOT.parent / "shared" / "data"
    return str(shared if (shared / "MNIST" / "raw").is_dir() else ROOT / "data")


def project_config(*overrides: str) -> DictConfig:
    """The config ``run.py`` would compose, plus the command line's own overrides."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[f"paths.data_dir={data_dir()}", "paths.output_dir=/tmp/mnist-budget-bench", *overrides, *sys.argv[1:]],
        )


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def images_per_second(step: Callable[[], int], seconds_floor: float = 0.0) -> float:
    """Time one call of ``step`` (which returns how many images it processed)."""
    start = time.perf_counter()
    count = step()
    return count / max(time.perf_counter() - start, seconds_floor or 1e-9)


def device_note() -> str:
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return f"torch {torch.__version__}, {name}, {torch.get_num_threads()} threads"
