"""The boundary between the command line and the tasks: ``run.py`` calls ``main``.

It owns what every task shares, so that a task's function (conf/task/<name>.yaml names it) reads
top to bottom:
1. **Compose and check before anything is written** (``preflight``): bad input is refused in one
   line, ``error: <what>: <how to fix it>``, exit 2. This is the one place the config is composed
   twice: ``@hydra.main`` composes it again to make the run folder, and Hydra has no public way to
   hand it a config composed beforehand; a refusal found only after that would already have
   overwritten the files of the run folder a resume points at.
2. **Run the job** (``job``): a sweep's job checks its own config's rules (the preflight saw the
   first job only), sets the threads, and calls the task's function.
3. **What becomes of a job that did not finish**: a signal (``interrupted``: the line that says how
   to resume), a refusal or a failure (``failed``: one line; in a sweep the job is marked failed),
   SLURM's time limit (``scheduler_error``). In a sweep every job rewrites the sweep's summary.
``HYDRA_FULL_ERROR=1`` shows a refusal's traceback instead of its line.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from mnist_budget import stopping
from mnist_budget.errors import Interrupted, UserError, find_user_error, first_line
from mnist_budget.rules import check_config, in_multirun, runs_on_slurm
from mnist_budget.tasks import task_function
from mnist_budget.tasks.preflight import preflight


class JobFailed(Exception):
    """A sweep job that stopped; its one-line reason is in its failure.json and the sweep summary."""


def main(conf_dir: Path) -> None:
    """``python run.py [overrides]``: check, then run the task under Hydra; exit as the run ended."""
    try:
        preflight(sys.argv[1:], conf_dir)
    except UserError as err:
        if show_tracebacks():
            raise
        refuse(err)
    hydra.main(version_base="1.3", config_path=str(conf_dir), config_name="config")(job)()
    if stopping.STOP.is_set():  # a sweep whose jobs ran in this process, stopped by a signal
        sys.exit(stopping.exit_code())


def job(cfg: DictConfig) -> float:
    """One Hydra job: run the task; return ``optimized_metric`` (training) for sweepers to optimise."""
    run_dir = Path(cfg.paths.output_dir)
    try:
        if in_multirun() and sweep_stopped():
            return record_job_end(run_dir, "not started: the sweep was stopped before this job began", "interrupted")
        if in_multirun():
            check_config(cfg)  # the preflight checked the first job's values; each job has its own
        metrics = run_task(cfg)
        if in_multirun():
            record_job_end(run_dir)
        return metrics.get(cfg.optimized_metric, math.nan)
    except Interrupted as err:  # SIGTERM or Ctrl-C: the checkpoint is saved, the line says how to resume
        return interrupted(err, run_dir)
    except Exception as err:  # noqa: BLE001 - a UserError may come wrapped (Hydra's instantiate)
        failed(err, run_dir)


def run_task(cfg: DictConfig) -> dict[str, float]:
    """The task's function with the process set up for it (imported here: torch takes seconds to
    load, and ``--help``, ``--cfg`` and the preflight's refusals answer without it)."""
    from mnist_budget.hardware import flush_denormals, set_threads

    run = task_function(cfg)
    flush_denormals(bool(cfg.flush_denormal))  # before the threads start (conf/config.yaml)
    set_threads(cfg.get("threads", "auto"), cfg.trainer)
    return run(cfg)


def sweep_stopped() -> bool:
    return stopping.STOP.is_set() or stopping.stopped_marker(HydraConfig.get().sweep.dir).exists()


def on_slurm() -> bool:
    """Whether this job runs as a SLURM job (submitit requeues it itself)."""
    return runs_on_slurm(HydraConfig.get().launcher)


def record_job_end(run_dir: Path, reason: str | None = None, status: str = "failed") -> float:
    """A sweep job's row in the sweep summary: done (``reason`` None) or how it ended."""
    from mnist_budget.reporting.sweep import clear_failure, record_failure, update_summary  # sweeps only

    if reason is None:
        clear_failure(run_dir)
    else:
        record_failure(run_dir, reason, status)
    update_summary()
    return math.nan


def interrupted(err: Interrupted, run_dir: Path) -> float:
    """A run stopped by a signal: its line, then in a sweep its summary row and what comes next."""
    print(err, file=sys.stderr)
    if not in_multirun():
        sys.exit(err.exit_code)
    record_job_end(run_dir, str(err), status="interrupted")
    if on_slurm():
        sys.exit(err.exit_code)  # submitit has requeued the job (a time limit) or SLURM will (a pre-emption)
    # On this machine the sweep stops: the jobs after this one do not start, and the command
    # exits with the signal's code once the jobs in hand have saved (mnist_budget.stopping).
    stopping.request_stop(err.exit_code - 128)
    return math.nan


def failed(err: Exception, run_dir: Path) -> NoReturn:
    """A run that failed: one line (exit 2) on its own, or in a sweep a failed job with its reason."""
    user_error = find_user_error(err) or config_error(err) or scheduler_error(err, run_dir)
    if show_tracebacks() or not (user_error or in_multirun()):
        raise err
    if not in_multirun():
        refuse(user_error)
    log_traceback(err)
    message = str(user_error) if user_error else f"{type(err).__name__}: {first_line(err)}"
    record_job_end(run_dir, message)
    raise JobFailed(message) from None  # Hydra marks the job failed; Optuna records a failed trial


def config_error(err: BaseException) -> UserError | None:
    """A component that refused its config while Hydra built it (say the Trainer), as one line."""
    if not isinstance(err, InstantiationException):
        return None
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "the config")
    cause = err.__cause__ or err
    return UserError(
        f"{key} could not be built ({type(cause).__name__}: {first_line(cause)}): fix the {key}.* overrides"
    )


def scheduler_error(err: BaseException, run_dir: Path) -> UserError | None:
    """submitit's end of a job that SLURM's time limit stopped once more than it may requeue it.
    SLURM's warning may come before training has started (see ``signal_delay_s`` in
    conf/hydra/launcher/slurm.yaml), so the line says whether there is a checkpoint to resume."""
    if type(err).__name__ != "UncompletedJobError" or "timed-out too many times" not in str(err):
        return None
    from mnist_budget.checkpoints import resolve_checkpoint_path  # loaded by the job already

    launcher = HydraConfig.get().launcher
    saved = resolve_checkpoint_path("auto", run_dir) is not None  # what ckpt_path=auto would resume
    then = "last.ckpt is saved: raise either, and run the sweep again with ckpt_path=auto to resume it"
    if not saved:
        then = "it stopped before its first checkpoint: raise either, and run the sweep again"
    return UserError(
        f"stopped by SLURM's time limit (hydra.launcher.timeout_min={launcher.get('timeout_min')}) once more than "
        f"hydra.launcher.max_num_timeout={launcher.get('max_num_timeout')} requeues allow; {then}"
    )


def show_tracebacks() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def log_traceback(err: BaseException) -> None:
    """The traceback into the run's log file only (if one is open): the console gets one line."""
    record = logging.LogRecord(
        "run", logging.ERROR, __file__, 0, "stopped: %s", (err,), (type(err), err, err.__traceback__)
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def refuse(err: UserError) -> NoReturn:
    """Print the one line and exit 2; the traceback goes to the run's log file."""
    log_traceback(err)
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
