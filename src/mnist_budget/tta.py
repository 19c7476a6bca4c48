"""Test-time augmentation (TTA): the mean class probability over an image and its one-pixel shifts.

One rule for every place that evaluates with TTA: ``task=predict tta=true`` (on the user's
images) and ``eval_tta=true`` (conf/evaluation/: validation and test of a training run, and
``task=eval``), so that a figure measured with TTA on validation means the same on the test set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# The image itself and shifted by one pixel each way (rows down, columns right; negative: up, left).
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shifted(images: torch.Tensor, down: int, right: int, background: float = 0.0) -> torch.Tensor:
    """Images (N, C, H, W) moved by up to one pixel down and right, ``background`` coming in."""
    padded = F.pad(images, (1, 1, 1, 1), value=background)
    height, width = images.shape[-2:]
    return padded[..., 1 - down : 1 - down + height, 1 - right : 1 - right + width]


def mean_probabilities(
    forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, background: float = 0.0
) -> torch.Tensor:
    """Softmax of ``forward``'s logits averaged over ``SHIFTS`` (5 forward passes), in fp32."""
    return torch.stack(
        [forward(shifted(images, *shift, background)).float().softmax(dim=1) for shift in SHIFTS]
    ).mean(0)
