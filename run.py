"""Command line: ``python run.py [task=train|eval|predict|export|serve] [group=option ...] [key=value ...]``; ``-m`` sweeps.

``task=<name>`` picks conf/task/<name>.yaml, which names the function that runs it
(``task_function``, see src/mnist_budget/tasks/__init__.py).

Every refusal is one line, ``error: <what is wrong>: <how to fix it>``, with exit code 2: bad
input is checked before Hydra starts the job (mnist_budget.tasks.preflight), so nothing is written; a
problem found later (say a non-finite loss) stops the run the same way, its traceback kept in the
run's log file. ``HYDRA_FULL_ERROR=1`` shows the traceback instead.
"""

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from mnist_budget.errors import Interrupted, UserError, find_user_error, first_line
from mnist_budget.tasks.preflight import preflight

CONF_DIR = Path(__file__).resolve().parent / "conf"


class JobFailed(Exception):
    """A sweep job that stopped; its one-line reason is in its failure.json and the sweep summary."""


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


def refuse(err: UserError) -> None:
    """Print the one line and exit 2; the traceback goes to the run's log file."""
    log_traceback(err)
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Run the task; return ``optimized_metric`` (training) so that sweepers can optimise it.

    In a sweep a failed job writes failure.json (its error line) and raises JobFailed: Hydra marks
    the job failed (Optuna records a failed trial and goes on). Every job rewrites the sweep summary,
    also when a scheduler stops it while it is still starting.
    """
    try:
        return run_job(cfg)
    except Interrupted as err:  # SIGTERM or Ctrl-C: the checkpoint is saved, the line says how to resume
        return interrupted(err, Path(cfg.paths.output_dir))
    except Exception as err:  # noqa: BLE001 - a UserError may come wrapped (Hydra's instantiate)
        failed(err, Path(cfg.paths.output_dir))


def run_job(cfg: DictConfig) -> float:
    # Imported here, not at the top: torch takes a second or more to load, and --help, --cfg and
    # the preflight's refusals answer without it.
    from mnist_budget.hardware import flush_denormals, in_multirun, set_threads
    from mnist_budget.reporting.sweep import clear_failure, record_failure, update_summary
    from mnist_budget.stopping import STOP, stopped_marker
    from mnist_budget.tasks import task_function

    if in_multirun() and (STOP.is_set() or stopped_marker(HydraConfig.get().sweep.dir).exists()):
        record_failure(
            Path(cfg.paths.output_dir), "not started: the sweep was stopped before this job began", "interrupted"
        )
        update_summary()
        return float("nan")
    run_task = task_function(cfg)
    flush_denormals(bool(cfg.flush_denormal))  # before the threads start (conf/config.yaml)
    set_threads(cfg.get("threads", "auto"), cfg.trainer)
    metrics = run_task(cfg)
    if in_multirun():
        clear_failure(Path(cfg.paths.output_dir))
        update_summary()
    return metrics.get(cfg.optimized_metric, float("nan"))


def interrupted(err: Interrupted, run_dir: Path) -> float:
    """A run stopped by a signal: its line, then in a sweep its summary row and what comes next."""
    from mnist_budget.hardware import in_multirun
    from mnist_budget.reporting.sweep import record_failure, update_summary
    from mnist_budget.stopping import request_stop

    print(err, file=sys.stderr)
    if not in_multirun():
        sys.exit(err.exit_code)
    record_failure(run_dir, str(err), status="interrupted")
    update_summary()
    if on_slurm():
        sys.exit(err.exit_code)  # submitit has requeued the job (a time limit) or SLURM will (a pre-emption)
    # On this machine the sweep stops: the jobs after this one do not start, and the command
    # exits with the signal's code once the jobs in hand have saved (mnist_budget.stopping).
    request_stop(err.exit_code - 128)
    return float("nan")


def failed(err: Exception, run_dir: Path) -> None:
    """A run that failed: one line (exit 2) on its own, or in a sweep a failed job with its reason."""
    from mnist_budget.hardware import in_multirun
    from mnist_budget.reporting.sweep import record_failure, update_summary

    user_error = find_user_error(err) or config_error(err) or scheduler_error(err, run_dir)
    if show_tracebacks() or not (user_error or in_multirun()):
        raise err
    message = str(user_error) if user_error else f"{type(err).__name__}: {first_line(err)}"
    if not in_multirun():
        refuse(user_error)
    log_traceback(err)
    record_failure(run_dir, message)
    update_summary()
    raise JobFailed(message) from None  # Hydra marks the job failed; Optuna records a failed trial


def on_slurm() -> bool:
    """Whether this job runs as a SLURM job of the submitit launcher (which requeues it itself)."""
    return "submitit" in str(HydraConfig.get().launcher.get("_target_", "")).lower() or "Slurm" in str(
        HydraConfig.get().launcher.get("_target_", "")
    )


if __name__ == "__main__":
    try:
        preflight(sys.argv[1:], CONF_DIR)
    except UserError as err:
        if show_tracebacks():
            raise
        refuse(err)
    main()
    from mnist_budget import stopping  # here, not at the top: joblib pickles main() with run.py's globals

    if stopping.STOP.is_set():  # a sweep whose jobs ran in this process, stopped by a signal
        sys.exit(stopping.exit_code())
