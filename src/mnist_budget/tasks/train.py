"""``task=train``: fit, test the final (or the best) weights on the official test set (unless
``test_after_training`` is false: a search's trials), write the results."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from mnist_budget.checkpoints import resume_from
from mnist_budget.data.sets import dataset_name
from mnist_budget.hardware import RunSettings, describe, hardware_line, run_settings
from mnist_budget.reporting.model_card import write_card
from mnist_budget.reporting.plots import plot_history, write_test_figures
from mnist_budget.reporting.results import final_val_acc, test_set_scores, write_results
from mnist_budget.training.builders import build_datamodule, build_trainer
from mnist_budget.training.callbacks import (
    EpochHistory,
    Interruption,
    ParameterBudget,
    RandomState,
    interruption_message,
)
from mnist_budget.training.module import Classifier

log = logging.getLogger(__name__)

# Below this test accuracy a run is flagged: 10 classes give 0.10 by guessing.
CHANCE_LEVEL = 0.15


def run_overrides() -> list[str]:
    """The command-line overrides of this run (empty outside a Hydra run), for the seed and sweep reports."""
    if not HydraConfig.initialized():
        return []
    # A search worker's job sets its task_function (mnist_budget.search.sweeper): not the user's choice.
    return [o for o in HydraConfig.get().overrides.task if not o.startswith("task_function=")]


def recorded_overrides(cfg: DictConfig) -> list[str]:
    """What results.json records as the run's overrides: the command line's, or for a search trial
    those that train it alone (``search_overrides``, set by mnist_budget.tasks.search)."""
    return list(cfg.search_overrides) if cfg.get("search_overrides") else run_overrides()


def compared_knobs(cfg: DictConfig, params: int, precision: str) -> dict[str, Any]:
    """What TensorBoard's HParams tab shows for a run: the knobs a user compares across runs (the
    whole config stays in .hydra/config.yaml)."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    knobs = {
        "experiment": cfg.experiment_name or "-",
        "model": cfg.model.name,
        "params": params,
        "optim": choices.get("optim", "-"),
        "lr": cfg.optim.lr,
        "weight_decay": cfg.optim.get("weight_decay", 0.0),
        "label_smoothing": cfg.optim.get("label_smoothing", 0.0),
        "batch_size": cfg.data.batch_size,
        "max_epochs": cfg.trainer.max_epochs,
        "augment": choices.get("augment", "-") or "none",
        "seed": cfg.seed,
        "precision": precision,
    }
    return {key: value if isinstance(value, (int, float, str, bool)) else str(value) for key, value in knobs.items()}


def log_final_hyperparameters(trainer: L.Trainer, knobs: dict[str, Any], metrics: dict[str, float]) -> None:
    """The compared knobs with the run's real final metrics (TensorBoard's HParams tab)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(knobs, metrics=metrics)
        else:
            logger.log_hyperparams(knobs)
            logger.log_metrics(metrics, step=trainer.global_step)
        logger.save()


def why_training_stopped(trainer: L.Trainer) -> str:
    """The schedule's end, or the early stop and its threshold."""
    early = trainer.early_stopping_callback
    if early is not None and early.stopped_epoch > 0:
        threshold = early.stopping_threshold
        reached = (
            f"{early.monitor} reached {threshold:g}" if threshold is not None else f"{early.monitor} stopped improving"
        )
        return f"early stop: {reached} in epoch {early.stopped_epoch + 1}"
    return f"the schedule's end (trainer.max_epochs={trainer.max_epochs})"


def fit(
    trainer: L.Trainer,
    module: Classifier,
    datamodule: Any,
    ckpt_path: str | None,
    interruption: Interruption,
    output_dir: Path,
) -> None:
    """Train. A SIGTERM or Ctrl-C (``Interruption`` saved the step) becomes ``Interrupted``, whose
    line says how to resume."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:  # Lightning's way out after SIGTERM or Ctrl-C
        if interruption.stopped is None:
            raise
        raise interruption_message(interruption.stopped, output_dir, run_overrides()) from None


def tested_checkpoint(trainer: L.Trainer, test_checkpoint: str) -> tuple[str, str | None]:
    """The best epoch's checkpoint (or "") and the one to test: ``None`` means the weights in hand (last)."""
    monitored = [callback for callback in trainer.checkpoint_callbacks if getattr(callback, "monitor", None)]
    best = monitored[0].best_model_path if monitored else ""
    return best, (best if test_checkpoint == "best" and best else None)


def train_results(
    cfg: DictConfig,
    trainer: L.Trainer,
    settings: RunSettings,
    hardware: dict[str, Any],
    metrics: dict[str, float],
    test_report: dict[str, Any] | None,
    params: int,
    epochs: list[dict[str, Any]],
    train_seconds: float,
    checkpoints: tuple[str, str | None],
) -> dict[str, Any]:
    """results.json of a training run."""
    best, tested = checkpoints
    return {
        "task": "train",
        "model": cfg.model.name,
        "experiment": cfg.experiment_name or cfg.model.name,
        "claim": cfg.claim,
        "params": params,
        "budget": cfg.model.budget,
        "epochs": len(epochs),
        "stopped_by": why_training_stopped(trainer),
        "best_val_acc": metrics["val/acc_best"],
        "optimized_metric": cfg.optimized_metric,  # what a sweep over this run ranks it by
        "tested": test_report is not None,  # false: a search trial, scored on validation alone
        **(
            test_set_scores(test_report, metrics, bool(cfg.eval_tta))
            if test_report is not None
            else {"eval_tta": bool(cfg.eval_tta)}
        ),
        "train_seconds": round(train_seconds, 2),
        "seconds_per_epoch": round(train_seconds / max(1, len(epochs)), 2),
        "best_checkpoint": best or None,
        "tested_checkpoint": tested or "last weights",
        "seed": cfg.seed,
        "overrides": recorded_overrides(cfg),
        "hardware": hardware,
        "precision": settings.precision,
        "memory_layout": settings.layout,
        "processes": trainer.world_size,
        "global_batch_size": cfg.data.batch_size * trainer.world_size,
        "tags": list(cfg.get("tags") or []),
        "chance_level": metrics.get("test/acc", metrics["val/acc"]) < CHANCE_LEVEL,
        "dataset": dataset_name(cfg),
        "val_size": cfg.data.get("val_size"),
        "extra_train": cfg.data.get("extra_train") is not None,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "history": epochs,
    }


def checkpoint_folders(trainer: L.Trainer) -> list[Path]:
    """The folders the run's checkpoints were written to."""
    folders = {Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)}
    return sorted(folder for folder in folders if folder.is_dir())


def train(cfg: DictConfig, *callbacks: Callback) -> dict[str, float]:
    """Fit, test the final (or best) weights, write results.json and the figures; return the metrics.
    ``callbacks``: more for the Trainer (a search trial's pruning callback)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    log.info("run folder: %s", output_dir)
    settings = run_settings(cfg)  # a bad layout fails here, before any data loads
    hardware = describe(settings.device)
    auto = " (auto)" if str(cfg.trainer.precision) == "auto" else ""
    log.info(
        "hardware: %s; precision %s%s, layout %s", hardware_line(hardware), settings.precision, auto, settings.layout
    )

    module = Classifier.from_config(cfg)
    ckpt_path, resume_step = resume_from(cfg, module.hparams["model"], module.hparams["optim"])
    datamodule = build_datamodule(cfg)
    budget, history, interruption = ParameterBudget(cfg.model.budget), EpochHistory(), Interruption()
    trainer = build_trainer(
        cfg, budget, history, RandomState(), interruption, *callbacks, settings=settings, resume_step=resume_step
    )
    fit(trainer, module, datamodule, ckpt_path, interruption, output_dir)
    # Read now: testing a checkpoint restores the callbacks' state, history included, as of that epoch.
    epochs, train_seconds = list(history.history), history.train_seconds
    checkpoints = tested_checkpoint(trainer, cfg.test_checkpoint)
    metrics = {
        # From the history rather than the MaxMetric: the history survives a resume from ckpt_path.
        "val/acc_best": max((row["val/acc"] for row in epochs if "val/acc" in row), default=float("nan")),
        "val/acc": final_val_acc(epochs),  # the final weights'
    }
    tested = bool(cfg.get("test_after_training", True))
    if tested:
        metrics.update(test(trainer, module, datamodule, checkpoints[1]))
    if not trainer.is_global_zero:
        return metrics  # under DDP only rank 0 writes the results, plots and figures
    test_report = module.test_report() if tested else None
    if test_report is not None:
        write_test_figures(test_report, output_dir, trainer.loggers, trainer.global_step)
    knobs = compared_knobs(cfg, budget.params, settings.precision)
    log_final_hyperparameters(trainer, knobs, {f"hp/{k.replace('/', '_')}": v for k, v in metrics.items()})
    results = train_results(
        cfg, trainer, settings, hardware, metrics, test_report, budget.params, epochs, train_seconds, checkpoints
    )
    if results.get("chance_level"):
        log.warning(
            "%s accuracy %.2f%% is at chance level (10 classes): this run learnt nothing useful "
            "(too short, or diverged: check optim.*); results.json says chance_level: true",
            "test" if tested else "validation",
            100 * metrics.get("test/acc", metrics["val/acc"]),
        )
    write_results(output_dir / "results.json", results)
    for folder in checkpoint_folders(trainer):  # the model card beside the checkpoints it describes
        write_card(folder, results, results_path=output_dir / "results.json")
    if epochs:
        plot_history(epochs, output_dir / "training_metrics.png")
    scored = (
        f"test accuracy {100 * metrics['test/acc']:.2f}% ({'best' if checkpoints[1] else 'final'} weights, official 10k test set)"
        if tested
        else f"validation accuracy {100 * metrics['val/acc']:.2f}% (final weights; not tested: test_after_training=false)"
    )
    log.info(
        "%s: %s after %d epochs, stopped by %s; %.1f s of training; run folder: %s",
        cfg.model.name,
        scored,
        len(epochs),
        results["stopped_by"],
        train_seconds,
        output_dir,
    )
    return metrics


def test(trainer: L.Trainer, module: Classifier, datamodule: Any, ckpt_path: str | None) -> dict[str, float]:
    """The official test set's accuracy and loss of ``ckpt_path`` (``None``: the weights in hand)."""
    log.debug("testing %s on the official test set", ckpt_path or "the last weights")
    (test_metrics,) = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True, verbose=False)
    return {"test/acc": test_metrics["test/acc"], "test/loss": test_metrics["test/loss"]}
