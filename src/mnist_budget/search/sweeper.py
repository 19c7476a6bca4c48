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

import logging
import signal
import sys
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from mnist_budget.errors import first_line
from mnist_budget.search.identity import Recipe, fixed_settings, plain_command_line, recipe_of
from mnist_budget.search.report import report
from mnist_budget.search.space import parse_space
from mnist_budget.search.study import (
    counts_toward_total,
    make_storage,
    open_study,
    retry_stale_and_interrupted,
    search_lock,
    settings_of,
)
from mnist_budget.stopping import STOP, exit_code, stoppable

log = logging.getLogger(__name__)

WORKER_TASK = "mnist_budget.tasks.search.run_trials"
BASE = "base"  # the user attribute of a trial that runs the base config's own values (enqueue_base)


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

    def identity(self, arguments: list[str], searched: list[str]) -> tuple[dict[str, str], Recipe | None]:
        """The study's fixed settings, and its recipe, which needs the config of the same command
        without the search (composed by Hydra's compose API, in this Hydra run's config search path).
        No recipe where that config cannot be composed (an override of a key only the search config
        has): the best trial's line then gives the command line's overrides and the trial's values."""
        assert self.config is not None
        fixed = fixed_settings(self.config, searched)
        try:
            plain = compose(config_name=self.config.hydra.job.config_name, overrides=plain_command_line(arguments))
        except HydraException as err:
            log.warning("the best trial's command line will lack the search config's own settings: %s", first_line(err))
            return fixed, None
        return fixed, recipe_of(self.config, plain, arguments, searched)

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        settings = settings_of(self.config.hydra.sweeper, sweep_dir)
        space = parse_space(settings.params)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        storage = make_storage(settings)
        study = open_study(settings, space, storage=storage, identity=self.identity(arguments, list(space)))
        with search_lock(sweep_dir):
            if settings.enqueue_base and not study.get_trials(deepcopy=False):
                base = {key: OmegaConf.select(self.config, key) for key in space}
                study.enqueue_trial(base, user_attrs={BASE: True})
                log.info("search %r: trial 0 is the base config's own values (enqueue_base)", study.study_name)
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
        jobs = [[*arguments, f"task_function={WORKER_TASK}"] for _ in range(settings.n_jobs)]
        with stoppable(sweep_dir):
            self.launcher.launch(jobs, initial_job_idx=0)
        for line in report(study, sweep_dir, arguments, settings.n_trials):
            log.info("%s", line)
        if STOP.is_set():
            print(
                f"search stopped by {signal.Signals(exit_code() - 128).name}: the trials in hand were saved; run the "
                "same command again to continue the study",
                file=sys.stderr,
            )
            sys.exit(exit_code())
