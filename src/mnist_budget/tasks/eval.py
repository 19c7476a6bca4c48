"""``task=eval``: a trained checkpoint scored on the official test set, with its mistakes shown."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from mnist_budget.checkpoints import dataset_of, network_of
from mnist_budget.hardware import describe, hardware_line, run_settings
from mnist_budget.models import count_parameters
from mnist_budget.reporting.plots import write_test_figures
from mnist_budget.reporting.results import test_set_scores, write_results
from mnist_budget.training.builders import build_datamodule, build_trainer
from mnist_budget.training.module import Classifier

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path``'s weights; write results.json and the two figures into the run folder."""
    output_dir = Path(cfg.paths.output_dir)
    net, hparams = network_of(cfg)
    module = Classifier(
        model=hparams["model"],
        optim=hparams.get("optim") or {},
        dataset=dataset_of(hparams).name,
        eval_tta=cfg.eval_tta,
    )
    module.net = net  # the checkpoint's weights, loaded once (load_network)
    settings = run_settings(cfg)
    hardware = describe(settings.device)
    log.info("hardware: %s; precision %s", hardware_line(hardware), settings.precision)

    datamodule = build_datamodule(cfg, training=False)
    trainer = build_trainer(cfg, settings=settings)
    (metrics,) = trainer.test(module, datamodule=datamodule, weights_only=True, verbose=False)
    report = module.test_report()
    write_test_figures(report, output_dir, trainer.loggers)
    results = {
        "task": "eval",
        "checkpoint": str(cfg.ckpt_path),
        "model": hparams["model"]["name"],
        "params": count_parameters(net),
        **test_set_scores(report, metrics, bool(cfg.eval_tta)),
        "hardware": hardware,
        "precision": settings.precision,
        "memory_layout": settings.layout,
    }
    write_results(output_dir / "results.json", results)
    worst = min(report["per_class_acc"].items(), key=lambda item: item[1])
    log.info(
        "%s: test accuracy %.2f%% (%d of 10,000 wrong; weakest digit %s at %.2f%%); run folder: %s",
        results["model"],
        100 * results["test_acc"],
        results["misclassified"],
        worst[0],
        100 * worst[1],
        output_dir,
    )
    return {"test/acc": results["test_acc"], "test/loss": results["test_loss"]}
