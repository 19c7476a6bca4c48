"""How checkpoints are written: atomically (read them with mnist_budget.checkpoints.load_checkpoint)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its target and renames it into place.

    A run killed while saving leaves the previous ``last.ckpt`` whole (``os.replace`` is atomic
    within a folder); Lightning's own writer stages the file in the system temp folder, which is
    often another file system, where the final move is a copy that a kill can cut short.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with staging.open("wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)
