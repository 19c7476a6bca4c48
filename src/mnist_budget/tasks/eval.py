"""``task=eval``: a trained checkpoint scored on the official test set, with its mistakes shown."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from mnist_budget.checkpoints import load_network
from mnist_budget.hardware import describe, hardware_line, run_settings
from mnist_budget.models import count_parameters
from mnist_budget.module import Classifier
from mnist_budget.report import write_results, write_test_figures
from mnist_budget.tasks.train import build_datamodule, build_trainer

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path``'s weights; write results.json and the two figures into the run folder."""
    output_dir = Path(cfg.paths.output_dir)
    net, hparams = load_network(cfg.ckpt_path)
    module = Classifier(model=hparams["model"], optim=hparams.get("optim") or {})
    module.net = net  # the checkpoint's weights, loaded once (load_network)
    device, precision, layout = run_settings(cfg)
    hardware = describe(device)
    log.info("hardware: %s; precision: %s", hardware_line(hardware), precision)

    datamodule = build_datamodule(cfg, augment=False)
    trainer = build_trainer(cfg)
    (metrics,) = trainer.test(module, datamodule=datamodule, weights_only=True)
    report = module.test_report()
    write_test_figures(report, output_dir, trainer.loggers)
    results = {
        "task": "eval",
        "checkpoint": str(cfg.ckpt_path),
        "model": hparams["model"]["name"],
        "params": count_parameters(net),
        "test_acc": metrics["test/acc"],
        "test_loss": metrics["test/loss"],
        "per_class_acc": report["per_class_acc"],
        "misclassified": len(report["mistakes"]),
        "confusion_matrix": report["confusion_matrix"],
        "hardware": hardware,
        "precision": precision,
        "memory_layout": layout,
    }
    write_results(output_dir / "results.json", results)
    worst = min(report["per_class_acc"].items(), key=lambda item: item[1])
    log.info(
        "%s: test accuracy %.2f%% (%d of 10,000 wrong; weakest digit %s at %.2f%%); run directory: %s",
        results["model"], 100 * results["test_acc"], results["misclassified"], worst[0], 100 * worst[1], output_dir,
    )
    return {"test/acc": results["test_acc"], "test/loss": results["test_loss"]}
