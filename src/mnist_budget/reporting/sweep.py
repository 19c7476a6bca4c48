"""A sweep's own record: each job, as it ends, records a failure (failure.json) and rewrites the
sweep's summary (``summary.csv`` and ``summary.md`` in the sweep folder).

Works the same under every Hydra launcher (basic, joblib, submitit): each job takes a lock on the
sweep folder and rewrites the summary from every job folder's results.json or failure.json, so
the last job to end leaves the complete table, even when some jobs failed.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from mnist_budget.files import write_atomically
from mnist_budget.reporting.results import FAILURE_FILE
from mnist_budget.reporting.tables import write_sweep_summary


def record_failure(output_dir: Path, error: str, status: str = "failed", overrides: list[str] | None = None) -> None:
    """failure.json in the job's (or trial's) folder: the summary lists it as failed, interrupted or
    pruned, with its line. ``overrides``: the job's command-line overrides unless given."""
    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    record = {"status": status, "error": error, "overrides": overrides}
    write_atomically(output_dir / FAILURE_FILE, json.dumps(record, indent=2) + "\n")


def clear_failure(output_dir: Path) -> None:
    """A job that ends well after an earlier attempt of it stopped (a requeued or resumed job): its
    failure.json no longer holds."""
    (output_dir / FAILURE_FILE).unlink(missing_ok=True)


def update_summary() -> None:
    """Rewrite the sweep's summary under a lock (jobs of a parallel sweep end at the same time)."""
    sweep_dir = Path(HydraConfig.get().sweep.dir)
    with (sweep_dir / ".summary.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_sweep_summary(sweep_dir)
