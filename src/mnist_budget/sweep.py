"""What each job of a multirun (``-m``) does besides its task: share the cores, record a failure,
and rewrite the sweep's summary (``summary.csv`` and ``summary.md`` in the sweep folder).

Works the same under every Hydra launcher (basic, joblib, submitit): each job, as it ends, takes a
lock on the sweep folder and rewrites the summary from every job folder's results.json or
failure.json, so the last job to end leaves the complete table, even when some jobs failed.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from mnist_budget.report import FAILURE_FILE, write_sweep_summary


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


def set_threads(requested: int | str) -> int:
    """torch's thread count: ``auto`` shares the cores among the jobs running at once; a number is used as is.

    Parallel jobs that each start one thread per core fight over the cores (see the README's
    "Scaling out" for the measurement).
    """
    if str(requested) == "auto":
        jobs = parallel_jobs()
        if jobs == 1:
            return torch.get_num_threads()  # torch's default: one per core
        threads = max(1, available_cores() // jobs)
    else:
        threads = int(requested)
    torch.set_num_threads(threads)
    return threads


def record_failure(output_dir: Path, error: str) -> None:
    """failure.json in the job's folder: the summary lists the job with its error line."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    (output_dir / FAILURE_FILE).write_text(json.dumps({"error": error, "overrides": overrides}, indent=2) + "\n")


def update_summary() -> None:
    """Rewrite the sweep's summary under a lock (jobs of a parallel sweep end at the same time)."""
    sweep_dir = Path(HydraConfig.get().sweep.dir)
    with (sweep_dir / ".summary.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_sweep_summary(sweep_dir)
