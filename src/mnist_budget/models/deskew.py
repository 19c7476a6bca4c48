"""Deskewing by image moments, as a network's first step: MNIST's classic normalisation of slant.

Writers slant their digits by different amounts; a network that sees every digit upright has one
variation less to learn, and a slanted 4 or 9 from another writer looks more like MNIST's. Each
image is sheared horizontally about its centre of mass so that its ink's covariance of x and y
becomes zero (the shear is ``mu11 / mu02`` of the ink's central moments).

As a network's first layer (``Deskew``; ``+model.net.deskew=true`` for fast_cnn), training,
evaluation, ``task=predict``, the server and an exported ONNX file all deskew the same way: no
step of a pipeline can forget it. The layer has no parameters, so it changes no budget.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_SHEAR = 1.0  # a shear beyond 45 degrees is a drawing, not a slant: limited to this


def deskew(ink: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) images with bright ink on zero background, each sheared upright."""
    n, _, height, width = ink.shape
    # Pixel centres in affine_grid's [-1, 1] coordinates (align_corners=False); equal scales for
    # x and y on a square image, so a shear in pixels is the same shear here.
    ys = (torch.arange(height, device=ink.device, dtype=ink.dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=ink.device, dtype=ink.dtype) * 2 + 1) / width - 1
    mass = ink.sum(dim=(1, 2, 3)).clamp_min(1e-6)
    row_mass, col_mass = ink.sum(dim=(1, 3)), ink.sum(dim=(1, 2))  # (N, H), (N, W)
    mean_y = (row_mass * ys).sum(1) / mass
    mean_x = (col_mass * xs).sum(1) / mass
    dy = ys.view(1, 1, height, 1) - mean_y.view(n, 1, 1, 1)
    dx = xs.view(1, 1, 1, width) - mean_x.view(n, 1, 1, 1)
    mu11 = (ink * dx * dy).sum(dim=(1, 2, 3)) / mass
    mu02 = (ink * dy * dy).sum(dim=(1, 2, 3)) / mass
    shear = (mu11 / mu02.clamp_min(1e-6)).clamp(-MAX_SHEAR, MAX_SHEAR)
    # The output pixel (x, y) reads the input at (x + shear * (y - mean_y), y).
    zeros, ones = torch.zeros_like(shear), torch.ones_like(shear)
    theta = torch.stack(
        [torch.stack([ones, shear, -shear * mean_y], dim=1), torch.stack([zeros, ones, zeros], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    return F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Deskew(nn.Module):
    """Deskews images as the network receives them (normalised by any data set's constants) and
    returns them so: the background, each image's lowest value, is taken out before the moments
    and put back after, so no constants are needed (moments do not change with the ink's scale)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        background = x.amin(dim=(1, 2, 3), keepdim=True)
        return deskew(x - background) + background
