"""How checkpoints are written: atomically (read them with mnist_budget.checkpoints.load_checkpoint)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mnist_budget.errors import UserError, first_line


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its target and renames it into place.

    A run killed while saving leaves the previous ``last.ckpt`` whole (``os.replace`` is atomic
    within a folder); Lightning's own writer stages the file in the system temp folder, which is
    often another file system, where the final move is a copy that a kill can cut short. A disk
    that is full or read-only stops the run with one line naming the file (the previous one stays).
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
        except OSError as err:
            raise UserError(
                f"could not write the checkpoint {path} ({err.strerror or first_line(err)}): free disk space or make "
                f"{path.parent} writable (the previous {path.name}, if any, is unchanged)"
            ) from err
        finally:
            staging.unlink(missing_ok=True)
