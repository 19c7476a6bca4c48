"""Per-sample random rotation and translation of a whole batch, in two tensor operations.

kornia.augmentation.RandomAffine does the same (the reference recipes still use it), but its
parameter generation and checks make it cost about 1.7 ms per 128-image batch on a 2-core CPU,
against 0.3 ms for this module: over 10 % of a default training step. This module draws the
parameters for the whole batch at once and warps with ``affine_grid`` + ``grid_sample``
(bilinear, zero padding, rotation about the centre), as kornia does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mnist_budget.errors import UserError


class RandomShiftRotate(nn.Module):
    """Rotate each image by a uniform angle in [-degrees, degrees] and shift it by a uniform
    fraction in [-translate, translate] of its width (x) and height (y)."""

    def __init__(self, degrees: float = 10.0, translate: Sequence[float] = (0.1, 0.1)) -> None:
        super().__init__()
        if degrees < 0 or len(translate) != 2 or not all(0 <= t <= 1 for t in translate):
            raise UserError(
                f"augment degrees={degrees}, translate={list(translate)}: degrees must be >= 0 and "
                "translate two fractions in [0, 1]"
            )
        self.degrees = float(degrees)
        self.translate = (float(translate[0]), float(translate[1]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        options = {"device": images.device, "dtype": images.dtype}
        angle = torch.empty(n, **options).uniform_(-self.degrees, self.degrees) * (math.pi / 180)
        # affine_grid works in [-1, 1] coordinates, so a shift of a fraction f of the size is 2f.
        shift = torch.empty(n, 2, **options).uniform_(-1, 1) * torch.tensor(self.translate, **options) * 2
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}, translate={self.translate}"
