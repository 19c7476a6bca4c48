"""``task=export``: a checkpoint's network as one self-contained file (mnist_budget.inference.export), with
``<file>.json`` beside it (normalisation, input shape, class names, the unsure threshold), checked against
PyTorch; ``format=web``: that ONNX file in a folder with a page that reads digits in any browser
(mnist_budget.inference.web). A model card (README.md, mnist_budget.reporting.model_card) goes beside it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from mnist_budget.checkpoints import dataset_of, network_of
from mnist_budget.files import write_atomically
from mnist_budget.hardware import describe, hardware_line
from mnist_budget.inference.export import EXPORTERS, RUNNERS, sidecar, verify
from mnist_budget.inference.web import fetch_runtime, write_web_folder
from mnist_budget.models import count_parameters
from mnist_budget.reporting.model_card import results_beside, write_card
from mnist_budget.rules import check_export_format

log = logging.getLogger(__name__)


def accuracy_line(verified: dict[str, float], run_tta: bool) -> str:
    """The exported file's test accuracy, saying how it was scored: training scores with test-time
    augmentation by default (``eval_tta``), so a figure without it is not the run's figure."""
    once = f"test accuracy {100 * verified['test_acc']:.2f}% without TTA (one forward pass per image)"
    if not run_tta:
        return f"{once}, as the checkpoint's run scored"
    return (
        f"{once}; {100 * verified['test_acc_tta']:.2f}% with TTA as the checkpoint's run scored "
        "(each image's mean over itself and its four 1-pixel shifts)"
    )


def export(cfg: DictConfig) -> dict[str, float]:
    """Write the file and its JSON (``web``: the folder), then (``verify``) check it against PyTorch on the
    test set, and write the model card beside it."""
    fmt = str(cfg.format)
    check_export_format(fmt)
    web = fmt == "web"
    model_format = "onnx" if web else fmt
    if web:
        folder = Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / "web"
        path = folder / "model.onnx"
        runtime = fetch_runtime(str(cfg.data.data_dir), str(cfg.web.ort_version), str(cfg.web.registry))
    else:
        path = Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / f"model.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    net, hparams = network_of(cfg)
    log.info("hardware: %s", hardware_line(describe("cpu")))
    EXPORTERS[model_format](net, path)
    info = sidecar(path, hparams, count_parameters(net), model_format, str(cfg.ckpt_path))
    info["unsure_below"] = float(cfg.unsure_below)
    if cfg.get("verify", True):
        run_tta = bool(hparams.get("eval_tta"))  # how the checkpoint's run scored validation and test
        info["verified"] = verify(
            net,
            RUNNERS[model_format](path),
            Path(str(cfg.data.data_dir)),
            float(cfg.tolerance),
            dataset_of(hparams),
            tta=run_tta,
        )
        log.info(
            "verified on the 10k test images: largest logit difference %.2e, predictions identical; %s",
            info["verified"]["max_abs_logit_diff"],
            accuracy_line(info["verified"], run_tta),
        )
    write_atomically(f"{path}.json", json.dumps(info, indent=2) + "\n")
    if web:
        write_web_folder(path.parent, path, info, runtime, str(cfg.web.ort_version))
    results, results_path = results_beside(str(cfg.ckpt_path))
    card = write_card(path.parent, results, {**info, "format": fmt}, results_path)
    if web:
        size = sum(file.stat().st_size for file in path.parent.rglob("*") if file.is_file())
        log.info(
            "exported %s: open index.html, or put the folder on any static host (%d bytes in all)", path.parent, size
        )
    else:
        log.info("exported %s (%s, %d bytes) and %s.json", path, fmt, path.stat().st_size, path)
    log.info("model card: %s", card)
    return {"test/acc": info.get("verified", {}).get("test_acc", float("nan"))}
