"""Experiment trackers beyond TensorBoard, offline first (conf/logger/mlflow.yaml, wandb.yaml).

Both are optional extras (``uv sync --extra mlflow`` / ``--extra wandb``); the command line
refuses ``logger=mlflow`` or ``logger=wandb`` in one line when the package is missing.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def wandb_logged_in() -> bool:
    """Whether this user has given Weights & Biases an API key (environment or ``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(mode: str = "auto", **kwargs: Any) -> WandbLogger:
    """Lightning's WandbLogger, offline (files in the run folder, ``wandb sync`` uploads them later)
    unless ``mode`` says online or, with ``auto``, the user has logged in."""
    if mode == "auto":
        mode = "online" if wandb_logged_in() else "offline"
    return WandbLogger(offline=mode == "offline", **kwargs)
