"""The one inference path: [0, 1] images -> normalised -> network -> class probabilities, optionally
with test-time augmentation (TTA), and the rule that flags an answer as unsure.

Used by every place that reads digits with a trained network: the LightningModule's validation
and test with ``eval_tta`` (training and ``task=eval``), ``task=predict``, ``task=serve`` on
either backend, export's check against PyTorch, and the benchmarks. So a figure measured with TTA
on validation means the same on the test set, in predict and in the server.

TTA is the mean class probability over an image and its four one-pixel shifts (5 forward passes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mnist_budget.data.sets import DATASETS, DataSet, normalise

# The image itself and shifted by one pixel each way (rows down, columns right; negative: up, left).
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))

# A network on one backend: normalised images (N, 1, 28, 28), float32 -> logits (N, classes).
Logits = Callable[[torch.Tensor], torch.Tensor]


def shifted(images: torch.Tensor, down: int, right: int, background: float = 0.0) -> torch.Tensor:
    """Images (N, C, H, W) moved by up to one pixel down and right, ``background`` coming in."""
    padded = F.pad(images, (1, 1, 1, 1), value=background)
    height, width = images.shape[-2:]
    return padded[..., 1 - down : 1 - down + height, 1 - right : 1 - right + width]


def mean_probabilities(forward: Logits, images: torch.Tensor, background: float = 0.0) -> torch.Tensor:
    """Softmax of ``forward``'s logits averaged over ``SHIFTS`` (5 forward passes), in fp32."""
    return torch.stack([forward(shifted(images, *shift, background)).float().softmax(dim=1) for shift in SHIFTS]).mean(
        0
    )


def is_unsure(probability: float, unsure_below: float) -> bool:
    """The one rule of confidence, for predict and serve: a top probability below ``unsure_below``
    (conf/config.yaml) flags the digit as unsure."""
    return probability < unsure_below


@dataclass(frozen=True)
class Predictor:
    """Class probabilities of [0, 1] images (N, 1, 28, 28), in batches, normalised as ``data`` (the
    data set the network learnt: mnist_budget.checkpoints.dataset_of); ``tta``: averaged over
    each image's one-pixel shifts."""

    logits: Logits
    data: DataSet = DATASETS["mnist"]
    tta: bool = False
    batch_size: int = 256

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.probabilities(batch) for batch in images.float().split(self.batch_size)])

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        normalised = normalise(images, self.data)
        if self.tta:
            return mean_probabilities(self.logits, normalised, self.data.background)
        return self.logits(normalised).float().softmax(dim=1)


@dataclass(frozen=True)
class Answer:
    """What a reader is told about one image: the digit, its probability, whether that is unsure,
    and the top three (digit, probability) pairs, rounded for display."""

    digit: int
    probability: float
    unsure: bool
    top3: list[tuple[int, float]]


def answers(probabilities: torch.Tensor, unsure_below: float) -> list[Answer]:
    """One ``Answer`` per row of class probabilities."""
    values, digits = probabilities.topk(3, dim=1)
    return [
        Answer(
            int(row_digits[0]),
            round(float(row_values[0]), 4),
            is_unsure(float(row_values[0]), unsure_below),
            [(int(d), round(float(v), 4)) for d, v in zip(row_digits, row_values, strict=True)],
        )
        for row_values, row_digits in zip(values, digits, strict=True)
    ]
