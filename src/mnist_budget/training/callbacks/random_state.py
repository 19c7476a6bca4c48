"""The random generators saved in every checkpoint and restored when training resumes."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class RandomState(Callback):
    """Saves the random generators in every checkpoint and restores them when training resumes.

    Restored in ``on_train_start``: the training loader has then been set up (torch's DataLoader
    draws a number whenever it starts an iterator, and a resumed run starts one an uninterrupted
    run does not), and nothing that shapes training (shuffling, augmentation, dropout) has drawn.
    A run resumed mid-epoch continues that epoch's iterator; one resumed at an epoch's end starts
    the next epoch's iterator after this hook, as an uninterrupted run does after its save.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = dict(state_dict)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pending:
            restore_rng(self.pending)
            self.pending = None


def capture_rng() -> dict[str, Any]:
    """The generators' states as tensors (safe to load with ``weights_only=True``)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put the generators back to ``state`` (CUDA only where this machine has the same GPUs)."""
    torch.set_rng_state(state["cpu"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
