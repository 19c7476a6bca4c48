"""``task=export``: a checkpoint's network as one self-contained file (mnist_budget.inference.export),
with ``<file>.json`` beside it (normalisation, input shape, class names), checked against PyTorch."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from mnist_budget.checkpoints import dataset_of, network_of
from mnist_budget.files import write_atomically
from mnist_budget.hardware import describe, hardware_line
from mnist_budget.inference.export import EXPORTERS, RUNNERS, sidecar, verify
from mnist_budget.models import count_parameters
from mnist_budget.rules import check_export_format

log = logging.getLogger(__name__)


def export(cfg: DictConfig) -> dict[str, float]:
    """Write the file and its JSON, then (``verify``) check it against PyTorch on the test set."""
    fmt = str(cfg.format)
    check_export_format(fmt)
    path = Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / f"model.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    net, hparams = network_of(cfg)
    log.info("hardware: %s", hardware_line(describe("cpu")))
    EXPORTERS[fmt](net, path)
    info = sidecar(path, hparams, count_parameters(net), fmt, str(cfg.ckpt_path))
    if cfg.get("verify", True):
        info["verified"] = verify(
            net, RUNNERS[fmt](path), Path(str(cfg.data.data_dir)), float(cfg.tolerance), dataset_of(hparams)
        )
        log.info(
            "verified on the 10k test images: largest logit difference %.2e, predictions identical, test accuracy %.2f%%",
            info["verified"]["max_abs_logit_diff"],
            100 * info["verified"]["test_acc"],
        )
    write_atomically(f"{path}.json", json.dumps(info, indent=2) + "\n")
    log.info("exported %s (%s, %d bytes) and %s.json", path, fmt, path.stat().st_size, path)
    return {"test/acc": info.get("verified", {}).get("test_acc", float("nan"))}
