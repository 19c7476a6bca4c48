"""A search worker: the task each job of ``python run.py -m hparams_search=<name>`` runs (the
search sweeper, hydra_plugins/mnist_budget_plugins, sets it as the job's ``task_function``).

It asks the study for a trial whenever it is free, trains it as ``task=train`` would (the trial's
values applied to the job's config, its own folder ``trial_<number>`` in the search folder), and
tells the study how it ended: complete (the value of ``optimized_metric``), pruned (the pruner
stopped it after a validation: ``PyTorchLightningPruningCallback`` from optuna-integration),
failed, or interrupted (SIGTERM or Ctrl-C: saved at its step and retried by the next run of the
command, resuming from that save). Several workers, in one command or started by hand, share one
study through its storage (mnist_budget.search.study).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import signal
import threading
from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import Trial, TrialState
from optuna_integration import PyTorchLightningPruningCallback

from mnist_budget.checkpoints import last_checkpoint_path
from mnist_budget.errors import Interrupted, find_user_error, first_line
from mnist_budget.reporting.sweep import record_failure, update_summary
from mnist_budget.rules import check_config
from mnist_budget.search.budget import OVER_BUDGET, PARAMETERS, network_parameters
from mnist_budget.search.identity import Recipe, plain_command_line
from mnist_budget.search.space import as_overrides, parse_space
from mnist_budget.search.study import (
    INTERRUPTED,
    PRUNED_AT,
    RETRY_OF,
    SearchSettings,
    heartbeat,
    make_storage,
    next_trial,
    open_study,
    recipe,
    settings_of,
    trial_folder,
)
from mnist_budget.stopping import STOP, request_stop
from mnist_budget.tasks.train import recorded_overrides, run_overrides, train

log = logging.getLogger(__name__)


def trial_config(cfg: DictConfig, study: optuna.Study, trial: Trial, settings: SearchSettings) -> DictConfig:
    """The job's config with the trial's values, its own folder, and (for a retry) the stopped
    trial's last checkpoint to resume from."""
    trial_cfg = copy.deepcopy(cfg)
    with open_dict(trial_cfg):
        for key, value in trial.params.items():
            OmegaConf.update(trial_cfg, key, value, merge=False)
        trial_cfg.paths.output_dir = str(trial_folder(settings.sweep_dir, trial.number))
        trial_cfg.test_after_training = False  # a trial is chosen on validation alone: the test set stays unseen
        # What training this trial alone takes, which its results.json records (identity.Recipe).
        saved = recipe(study) or Recipe(plain_command_line(run_overrides()), [], [])
        trial_cfg.search_overrides = saved.overrides(trial.params)
        retry_of = trial.user_attrs.get(RETRY_OF)
        saved = last_checkpoint_path(trial_folder(settings.sweep_dir, retry_of)) if retry_of is not None else None
        trial_cfg.ckpt_path = str(saved) if saved is not None and saved.is_file() else None
    return trial_cfg


def run_trial(cfg: DictConfig, study: optuna.Study, trial: Trial, settings: SearchSettings) -> bool:
    """Train one trial and tell the study how it ended (an interruption is re-raised); ``False``
    for a network over the budget, which is never trained."""
    trial_cfg = trial_config(cfg, study, trial, settings)
    folder, overrides = Path(trial_cfg.paths.output_dir), recorded_overrides(trial_cfg)
    log.info(
        "trial %d: %s%s",
        trial.number,
        " ".join(as_overrides(trial.params)),
        f" (resuming {trial_cfg.ckpt_path})" if trial_cfg.ckpt_path else "",
    )
    pruning = PyTorchLightningPruningCallback(trial, monitor=settings.prune_on)
    try:
        check_config(trial_cfg)  # the trial's sampled values, by the rules every run's values meet
        if over_budget(study, trial, trial_cfg, overrides):
            return False
        with heartbeat(folder, settings.heartbeat_s):
            metrics = train(trial_cfg, pruning)
    except optuna.TrialPruned:
        (frozen,) = (t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        epoch = max(frozen.intermediate_values, default=-1) + 1  # the callback reports 0-based epochs
        trial.set_user_attr(PRUNED_AT, epoch)
        record_failure(folder, f"after epoch {epoch} by the pruner", status="pruned", overrides=overrides)
        study.tell(trial, state=TrialState.PRUNED)
        log.info("trial %d pruned after epoch %d", trial.number, epoch)
        return True
    except Interrupted as err:
        trial.set_user_attr(INTERRUPTED, err.where)
        record_failure(folder, f"{err.where}; the same search command resumes it", "interrupted", overrides)
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as err:  # noqa: BLE001 - a trial that fails is recorded as failed and the search goes on
        reason = str(find_user_error(err) or f"{type(err).__name__}: {first_line(err)}")
        log.exception("trial %d failed: %s", trial.number, reason)
        record_failure(folder, reason, overrides=overrides)
        study.tell(trial, state=TrialState.FAIL)
        return True
    value = metrics.get(str(cfg.optimized_metric), math.nan)
    if math.isnan(value):
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, value)
    log.info("trial %d: %s = %.4f", trial.number, cfg.optimized_metric, value)
    return True


def over_budget(study: optuna.Study, trial: Trial, trial_cfg: DictConfig, overrides: list[str]) -> bool:
    """Count the trial's network and tell Optuna by how much it is over ``model.budget`` (a
    constraint, feasible at 0 or below). A network over it is not trained: the trial ends now as
    "over budget" (pruned, so that it counts neither as complete nor as failed)."""
    params, budget = network_parameters(trial_cfg), int(trial_cfg.model.budget)
    trial.set_user_attr(PARAMETERS, params)
    trial.set_constraint(OVER_BUDGET, params - budget)
    if params <= budget:
        return False
    reason = f"{params:,} parameters, over model.budget={budget:,}; not trained"
    folder = Path(trial_cfg.paths.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record_failure(folder, reason, status="over budget", overrides=overrides)
    study.tell(trial, state=TrialState.PRUNED)
    log.info("trial %d: %s", trial.number, reason)
    return True


def run_trials(cfg: DictConfig) -> dict[str, float]:
    """Ask for trials and run them until the study has all it asked for, or a stop is requested."""
    hydra = HydraConfig.get()
    settings = settings_of(hydra.sweeper, hydra.sweep.dir)
    space = parse_space(settings.params)
    storage = make_storage(settings)
    study = open_study(settings, space, worker=int(hydra.job.num), storage=storage)
    if threading.current_thread() is threading.main_thread():
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, request_stop)
    log.info(
        "search worker %d (pid %d) on study %r in %s", hydra.job.num, os.getpid(), study.study_name, settings.storage
    )
    ran = 0
    while not STOP.is_set():
        trial = next_trial(study, storage, settings, space)
        if trial is None:
            break
        trained = True
        try:
            trained = run_trial(cfg, study, trial, settings)
        except Interrupted:
            STOP.set()
        ran += 1
        if trained:  # a shape over the budget is listed by the next rewrite: not worth a summary of its own
            update_summary()
    log.info("search worker %d: %d trial(s) run%s", hydra.job.num, ran, "; stopped" if STOP.is_set() else "")
    return {"trials_run": float(ran)}
