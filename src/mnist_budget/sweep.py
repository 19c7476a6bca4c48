"""What a job does besides its task: share the cores among the processes that train at once (sweep
jobs, CPU DDP processes) and, in a multirun (``-m``), record a failure and rewrite the sweep's
summary (``summary.csv`` and ``summary.md`` in the sweep folder).

Works the same under every Hydra launcher (basic, joblib, submitit): each job, as it ends, takes a
lock on the sweep folder and rewrites the summary from every job folder's results.json or
failure.json, so the last job to end leaves the complete table, even when some jobs failed.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from mnist_budget.results import FAILURE_FILE
from mnist_budget.tables import write_sweep_summary


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine (the joblib launcher's n_jobs, else 1)."""
    if not in_multirun():
        return 1
    jobs = HydraConfig.get().launcher.get("n_jobs")
    cores = available_cores()
    if jobs is None:
        return 1
    return cores if int(jobs) < 1 else int(jobs)  # joblib's -1: as many as cores


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_processes(trainer: Any) -> int:
    """Training processes on this machine's CPU: trainer.devices under CPU DDP (trainer=ddp_cpu), else 1."""
    devices = trainer.get("devices", 1)
    if str(trainer.get("accelerator")) == "cpu" and isinstance(devices, int) and devices > 1:
        return devices
    return 1


def set_threads(requested: int | str, trainer: Any) -> int:
    """torch's thread count: ``auto`` shares the cores among the processes that train at once (parallel
    sweep jobs, CPU DDP processes); a number is used as is.

    Processes that each start one thread per core fight over the cores: a 4-job sweep of two
    jobs at a time with 2 threads each took 237 s against 49 s with 1 thread each (docs/scale-out.md,
    "Parallel jobs on one machine").
    """
    if str(requested) == "auto":
        processes = parallel_jobs() * cpu_processes(trainer)
        if processes == 1:
            return torch.get_num_threads()  # torch's default: one per core
        threads = max(1, available_cores() // processes)
    else:
        threads = int(requested)
    torch.set_num_threads(threads)
    return threads


def record_failure(output_dir: Path, error: str, status: str = "failed") -> None:
    """failure.json in the job's folder: the summary lists the job as failed (or interrupted) with its line."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    record = {"status": status, "error": error, "overrides": overrides}
    (output_dir / FAILURE_FILE).write_text(json.dumps(record, indent=2) + "\n")


def update_summary() -> None:
    """Rewrite the sweep's summary under a lock (jobs of a parallel sweep end at the same time)."""
    sweep_dir = Path(HydraConfig.get().sweep.dir)
    with (sweep_dir / ".summary.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_sweep_summary(sweep_dir)
