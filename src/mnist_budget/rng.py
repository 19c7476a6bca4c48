"""The state of torch's random number generators, saved in checkpoints for an exact resume.

Training draws from the global CPU generator (shuffling, dropout, augmentation on the CPU) and the
CUDA generators (augmentation and dropout on a GPU). Python's and NumPy's generators are seeded by
``seed_everything`` but nothing in training draws from them, so they are not saved.
"""

from __future__ import annotations

from typing import Any

import torch


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
