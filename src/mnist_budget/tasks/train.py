"""Train, then test the final (or the best) weights on the official test set, then write the run's results."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelSummary, ProgressBar
from omegaconf import DictConfig, OmegaConf

from mnist_budget.callbacks import EpochHistory, ParameterBudget, RandomState
from mnist_budget.checkpoint_io import AtomicCheckpointIO
from mnist_budget.checkpoints import checkpoint_to_resume
from mnist_budget.data import MNISTDataModule
from mnist_budget.errors import UserError
from mnist_budget.hardware import describe, hardware_line, run_settings
from mnist_budget.module import Classifier
from mnist_budget.report import final_val_acc, plot_history, write_results, write_test_figures
from mnist_budget.validate import check_config

log = logging.getLogger(__name__)


class _DropLightningTips(logging.Filter):
    """Lightning advertises its cloud products on every run ("💡 Tip: ..."); keep the console to the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropLightningTips())


# Below this test accuracy a run is flagged: 10 classes give 0.10 by guessing.
CHANCE_LEVEL = 0.15

# Trainer switches and the callbacks they turn off.
SWITCHED_CALLBACKS = {
    "enable_progress_bar": ProgressBar,
    "enable_model_summary": ModelSummary,
    "enable_checkpointing": ModelCheckpoint,
}


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger); ``null`` entries are off."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry is not None and "_target_" in entry]


def build_loggers(cfg: DictConfig, resume_step: int | None = None) -> list[Any]:
    """The logger group; a resumed TensorBoard log drops what the killed run wrote after its checkpoint.

    ``purge_step`` makes TensorBoard hide events at or after that step from earlier event files in
    the same folder, so the resumed run's steps replace them instead of appearing twice.
    """
    loggers = instantiate_group(cfg.get("logger"))
    if resume_step is None:
        return loggers
    for logger in loggers:
        if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
            logger._kwargs["purge_step"] = resume_step  # passed on to its SummaryWriter
    return loggers


def build_datamodule(cfg: DictConfig, augment: bool = True) -> MNISTDataModule:
    """The data config, with the augment group's pipeline (if any, and if wanted) plugged in."""
    pipeline = instantiate(cfg.augment) if augment and cfg.get("augment") else None
    return instantiate(cfg.data, augment=pipeline)


def build_trainer(cfg: DictConfig, *extra_callbacks: Callback, resume_step: int | None = None) -> L.Trainer:
    """The trainer config with the callbacks and loggers groups (plus any callbacks given here).

    ``trainer.precision: auto`` is resolved for the device first (see mnist_budget.hardware);
    checkpoints are written atomically (mnist_budget.checkpoints).
    """
    callbacks = [*extra_callbacks, *instantiate_group(cfg.get("callbacks"))]
    # Lightning's own switches (++trainer.enable_progress_bar=false, ...) win over the callbacks
    # group: Lightning refuses a progress bar callback when the bar is switched off.
    for switch, kind in SWITCHED_CALLBACKS.items():
        if cfg.trainer.get(switch, True) is False:
            callbacks = [callback for callback in callbacks if not isinstance(callback, kind)]
    _, precision, _ = run_settings(cfg)
    return instantiate(
        cfg.trainer,
        precision=precision,
        callbacks=callbacks,
        logger=build_loggers(cfg, resume_step),
        plugins=[AtomicCheckpointIO()],
    )


def resume_from(cfg: DictConfig, module: Classifier) -> tuple[str | None, int | None]:
    """The checkpoint path to resume from (``ckpt_path``, ``last`` resolved) and its global step."""
    if not cfg.get("ckpt_path"):
        return None, None
    model, optim = module.hparams["model"], module.hparams["optim"]
    path, checkpoint = checkpoint_to_resume(str(cfg.ckpt_path), Path(cfg.paths.output_dir), model, optim)
    log.info("resuming %s (epoch %d, step %d)", path, checkpoint["epoch"] + 1, checkpoint["global_step"])
    return str(path), int(checkpoint["global_step"])


def run_overrides() -> list[str]:
    """The command-line overrides of this run (empty outside a Hydra run), for the seed and sweep reports."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def log_final_hyperparameters(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Log the composed config with the run's real final metrics (shown in TensorBoard's HParams tab)."""
    params = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
            logger.log_hyperparams(params, metrics=metrics)
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(metrics, step=trainer.global_step)
        logger.save()


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test the final (or best) weights, write results.json and training_metrics.png; return the metrics."""
    check_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    log.info("run directory: %s", output_dir)
    device, precision, layout = run_settings(cfg)  # a bad layout fails here, before any data loads
    hardware = describe(device)
    log.info("hardware: %s", hardware_line(hardware))
    log.info(
        "precision: %s%s; memory layout: %s", precision, " (auto)" if str(cfg.trainer.precision) == "auto" else "", layout
    )

    module = Classifier.from_config(cfg)
    module.build_optimizer()  # fail on a bad optimiser value now, not after loading data
    if cfg.test_checkpoint not in ("best", "last"):
        raise UserError(f"test_checkpoint={cfg.test_checkpoint} must be best or last")
    ckpt_path, resume_step = resume_from(cfg, module)

    datamodule = build_datamodule(cfg)
    budget = ParameterBudget(cfg.model.budget)
    history = EpochHistory()
    trainer = build_trainer(cfg, budget, history, RandomState(), resume_step=resume_step)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    train_seconds = time.perf_counter() - start
    # Copy now: testing a checkpoint restores the callbacks' state, history included, as of that epoch.
    epochs = list(history.history)
    # From the history rather than the MaxMetric: the history survives a resume from ckpt_path.
    best_val_acc = max((row["val/acc"] for row in epochs if "val/acc" in row), default=float("nan"))

    monitored = [callback for callback in trainer.checkpoint_callbacks if getattr(callback, "monitor", None)]
    best = monitored[0].best_model_path if monitored else ""
    tested = best if cfg.test_checkpoint == "best" and best else None  # None: the weights in hand (last)
    log.info("testing %s on the official test set", tested or "the last weights")
    (test_metrics,) = trainer.test(module, datamodule=datamodule, ckpt_path=tested, weights_only=True)

    test_report = module.test_report()
    metrics = {
        "val/acc_best": best_val_acc,
        "val/acc": final_val_acc(epochs),  # the final weights'
        "test/acc": test_metrics["test/acc"],
        "test/loss": test_metrics["test/loss"],
    }
    if not trainer.is_global_zero:
        return metrics  # under DDP only rank 0 writes the results, plots and figures
    write_test_figures(test_report, output_dir, trainer.loggers, trainer.global_step)
    log_final_hyperparameters(trainer, cfg, {f"hp/{k.replace('/', '_')}": v for k, v in metrics.items()})
    results = {
        "task": "train",
        "model": cfg.model.name,
        "experiment": cfg.experiment_name or cfg.model.name,
        "claim": cfg.claim,
        "params": budget.params,
        "budget": cfg.model.budget,
        "epochs": len(epochs),
        "best_val_acc": best_val_acc,
        "optimized_metric": cfg.optimized_metric,  # what a sweep over this run ranks it by
        "test_acc": metrics["test/acc"],
        "test_loss": metrics["test/loss"],
        "per_class_acc": test_report["per_class_acc"],
        "misclassified": len(test_report["mistakes"]),
        "confusion_matrix": test_report["confusion_matrix"],
        "train_seconds": round(train_seconds, 2),
        "seconds_per_epoch": round(train_seconds / max(1, len(epochs)), 2),
        "best_checkpoint": best or None,
        "tested_checkpoint": tested or "last weights",
        "seed": cfg.seed,
        "overrides": run_overrides(),
        "hardware": hardware,
        "precision": precision,
        "memory_layout": layout,
        "processes": trainer.world_size,
        "global_batch_size": cfg.data.batch_size * trainer.world_size,
        "tags": list(cfg.get("tags") or []),
        "history": epochs,
    }
    results["chance_level"] = metrics["test/acc"] < CHANCE_LEVEL
    if results["chance_level"]:
        log.warning(
            "test accuracy %.2f%% is at chance level (10 classes): this run learnt nothing useful "
            "(too short, or diverged: check optim.*); results.json says chance_level: true",
            100 * metrics["test/acc"],
        )
    write_results(output_dir / "results.json", results)
    if epochs:
        plot_history(epochs, output_dir / "training_metrics.png")
    log.info(
        "%s: test accuracy %.2f%% after %d epochs (%.1f s of training); run directory: %s",
        cfg.model.name,
        100 * metrics["test/acc"],
        len(epochs),
        train_seconds,
        output_dir,
    )
    return metrics
