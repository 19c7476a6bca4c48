"""mnist-budget's Hydra plug-ins: the Optuna search as a sweeper (``hydra/sweeper=optuna_search``),
joblib's launcher that stops its workers when it is stopped (``hydra/launcher=parallel``), and
submitit's SLURM launcher with one-line refusals (``hydra/launcher=slurm``).

Hydra finds plug-ins only in the ``hydra_plugins`` namespace and imports every plug-in at each
start, so this module stays light: the search (mnist_budget.search.sweeper) and submitit are
imported when a search starts or jobs are submitted.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import DictConfig


class OptunaSearch(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from mnist_budget.search.sweeper import SearchSweeper  # only when a search starts (see above)

        self.sweeper = SearchSweeper(**self.settings)
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self.sweeper.sweep(arguments)


class SlurmLauncher(SubmititSlurmLauncher):
    """submitit's SLURM launcher (hydra-submitit-launcher), with sbatch's refusal of the job array
    said in one line that names the key to change, instead of a traceback."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from submitit.core.utils import FailedJobError  # submitit, only when jobs are submitted (see above)

        chatter = io.StringIO()  # submitit echoes sbatch's stderr: the refusal below says it once
        try:
            with contextlib.redirect_stderr(chatter):
                return super().launch(job_overrides, initial_job_idx)
        except FailedJobError as err:
            if "sbatch: error" not in str(err):
                raise  # a job that failed, not a submission that was refused
            print(f"error: {sbatch_refusal(str(err), self.params)}", file=sys.stderr)
            sys.exit(2)


# sbatch's message -> the launcher key (conf/hydra/launcher/slurm.yaml) that asked for it.
SBATCH_KEYS = (
    ("generic resource", "gpus_per_node", "use hydra/launcher=slurm (no GPU) or a partition with GPUs"),
    ("invalid partition", "partition", "name one of your cluster's partitions (sinfo lists them)"),
    ("memory specification", "mem_gb", "ask for less memory per job"),
    ("more processors requested", "cpus_per_task", "ask for fewer CPUs per job"),
    ("node configuration is not available", "cpus_per_task", "ask for fewer CPUs, less memory or no GPU per job"),
    ("time limit", "timeout_min", "ask for less time per job"),
)


def sbatch_refusal(message: str, params: Mapping[str, Any]) -> str:
    """sbatch's first error line, with the hydra.launcher key that caused it and how to fix it."""
    line = next((part.strip() for part in message.splitlines() if "sbatch: error" in part), message.strip())
    reason = line.split("sbatch: error:", 1)[-1].strip()
    for fragment, key, fix in SBATCH_KEYS:
        if fragment in reason.lower():
            return f"SLURM refused the jobs ({reason}) for hydra.launcher.{key}={params.get(key)}: {fix}"
    return f"SLURM refused the jobs ({reason}): fix the hydra.launcher.* settings (conf/hydra/launcher/slurm.yaml)"


class ParallelLauncher(JoblibLauncher):
    """joblib's launcher (hydra-joblib-launcher): SIGTERM to the command is passed on to the worker
    processes, which save their runs at the step and are listed as interrupted; jobs that had not
    started do not start (mnist_budget.stopping). The command then exits 143 (Ctrl-C: 130), with no
    process left behind."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from mnist_budget.stopping import (  # stdlib only: light enough, but not needed at scan
            STOP,
            exit_code,
            stoppable,
        )

        sweep_dir = str(self.config.hydra.sweep.dir)
        try:
            with stoppable(sweep_dir):
                returns = super().launch(job_overrides, initial_job_idx)
        except Exception:  # noqa: BLE001 - after a stop, a worker's way out is not an error to report
            if not STOP.is_set():
                raise
        if STOP.is_set():
            print(
                f"sweep stopped: every job saved at its step or not started (summary: {sweep_dir}/summary.md); resume "
                f"with the same command plus hydra.sweep.dir={sweep_dir} ckpt_path=auto",
                file=sys.stderr,
            )
            sys.exit(exit_code())
        return returns
