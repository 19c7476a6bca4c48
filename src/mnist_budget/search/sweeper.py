"""The search's Hydra sweeper: ``python run.py -m hparams_search=<name>`` starts ``n_jobs`` search
workers through the configured launcher (basic: in this process; joblib: processes on this
machine; submitit: SLURM jobs), each running mnist_budget.tasks.search until the study has
``n_trials`` trials. Workers ask for trials as they free up: there is no batch to wait for.

SIGTERM (a scheduler, ``kill``) is passed on to the workers this process started: each saves
the trial in hand at its step and marks it interrupted, then the search writes its summary and
exits 143; Ctrl-C reaches the workers from the terminal and ends the same way (130). Running the
same command again continues the study (mnist_budget.search.study).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from mnist_budget.search.report import report
from mnist_budget.search.space import parse_space
from mnist_budget.search.study import (
    STOP,
    STOP_SIGNAL,
    counts_toward_total,
    make_storage,
    open_study,
    request_stop,
    retry_stale_and_interrupted,
    search_lock,
    settings_of,
)

log = logging.getLogger(__name__)

WORKER_TASK = "mnist_budget.tasks.search.run_trials"


def child_processes(parent: int) -> list[int]:
    """The processes ``parent`` started (Linux's /proc), but for joblib's resource tracker, which
    cleans up after the workers and must outlive them."""
    children = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"resource_tracker" not in command:
            children.append(int(entry.name))
    return children


def pass_on_sigterm(signum: int, frame: Any) -> None:
    """Stop asking for trials, and hand SIGTERM to the workers, which save their trials."""
    request_stop(signum)
    for pid in child_processes(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


class SearchSweeper(Sweeper):
    """Hydra's sweeper interface; the settings are conf/hydra/sweeper/optuna_search.yaml's keys."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        settings = settings_of(self.config.hydra.sweeper, sweep_dir)
        space = parse_space(settings.params)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        storage = make_storage(settings)
        study = open_study(settings, space, storage=storage)
        with search_lock(sweep_dir):
            retried = retry_stale_and_interrupted(study, storage, settings)
        done = sum(counts_toward_total(t) and t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
        log.info(
            "search %r: %d of %d trials so far, in %s%s; %d worker(s)",
            study.study_name,
            done,
            settings.n_trials,
            settings.storage,
            f", retrying trial(s) {', '.join(map(str, retried))}" if retried else "",
            settings.n_jobs,
        )
        signal.signal(signal.SIGTERM, pass_on_sigterm)
        signal.signal(signal.SIGINT, request_stop)  # the terminal sends Ctrl-C to the workers themselves
        jobs = [[*arguments, f"task_function={WORKER_TASK}"] for _ in range(settings.n_jobs)]
        self.launcher.launch(jobs, initial_job_idx=0)
        for line in report(study, sweep_dir, arguments, settings.n_trials):
            log.info("%s", line)
        if STOP.is_set():
            signum = STOP_SIGNAL[0] if STOP_SIGNAL else signal.SIGTERM
            print(
                f"search stopped by {signal.Signals(signum).name}: the trials in hand were saved; run the same command "
                "again to continue the study",
                file=sys.stderr,
            )
            sys.exit(128 + signum)
