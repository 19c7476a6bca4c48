"""Batch augmentations on the device: per-sample rotation and shift (``RandomShiftRotate``), pen and
scan styles (``RandomStrokeStyle``), digits stretched to fill a square box as some scanners leave
them (``RandomBoxFill``), and the check that builds the augment group's pipeline.

``RandomShiftRotate`` does what kornia.augmentation.RandomAffine does (the reference recipes still
use kornia), drawing the parameters for the whole batch at once and warping with ``grid_sample``
(bilinear, zero padding, rotation about the centre). The sampling grid is one matrix product of
the pixel centres with every image's 2x3 matrix (``affine_grid``'s own formula) instead of
``F.affine_grid``'s many tiny batched products: both are measured in docs/performance.md (levers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from mnist_budget.errors import UserError, find_user_error, first_line


class RandomShiftRotate(nn.Module):
    """Rotate each image by a uniform angle in [-degrees, degrees] and shift it by a uniform
    fraction in [-translate, translate] of its width (x) and height (y); with ``aspect`` > 1, also
    make it wider or narrower by up to that factor (writers differ in how wide they write)."""

    def __init__(self, degrees: float = 10.0, translate: Sequence[float] = (0.1, 0.1), aspect: float = 1.0) -> None:
        super().__init__()
        if degrees < 0 or len(translate) != 2 or not all(0 <= t <= 1 for t in translate) or not 1 <= aspect <= 2:
            raise UserError(
                f"augment degrees={degrees}, translate={list(translate)}, aspect={aspect}: degrees must be >= 0, "
                "translate two fractions in [0, 1] and aspect in [1, 2]"
            )
        self.degrees = float(degrees)
        self.translate = (float(translate[0]), float(translate[1]))
        self.aspect = float(aspect)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        options = {"device": images.device, "dtype": images.dtype}
        angle = torch.empty(n, **options).uniform_(-self.degrees, self.degrees) * (math.pi / 180)
        # affine_grid works in [-1, 1] coordinates, so a shift of a fraction f of the size is 2f.
        # Scaled by Python numbers: a tensor of them made on a GPU is a copy that waits for the GPU.
        shift = torch.empty(n, 2, **options).uniform_(-1, 1)
        shift[:, 0] *= self.translate[0]
        shift[:, 1] *= self.translate[1]
        shift *= 2
        cos, sin = angle.cos(), angle.sin()
        if self.aspect > 1:  # widths scaled by a log-uniform factor in [1/aspect, aspect]: x reads x / factor
            narrow = torch.empty(n, **options).uniform_(-1, 1).mul_(math.log(self.aspect)).exp_()
            cos_x, sin_x = cos * narrow, sin * narrow
        else:  # (no random draw: the default recipe's random stream stays as it was)
            cos_x, sin_x = cos, sin
        theta = torch.stack(
            [torch.stack([cos_x, -sin, shift[:, 0]], dim=1), torch.stack([sin_x, cos, shift[:, 1]], dim=1)], dim=1
        )
        return F.grid_sample(
            images, affine_grid(theta, images.shape), mode="bilinear", padding_mode="zeros", align_corners=False
        )

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}, translate={self.translate}, aspect={self.aspect}"


def affine_grid(theta: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``F.affine_grid(theta, shape, align_corners=False)`` (the same values, to float rounding) as
    one matrix product: (x, y, 1) of every pixel centre in [-1, 1] coordinates times each 2x3
    ``theta``, shaped (N, H, W, 2) for ``grid_sample``."""
    n, _, height, width = shape
    options = {"device": theta.device, "dtype": theta.dtype}
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, **options)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, **options)
    centres = torch.stack(
        [xs.repeat(height), ys.repeat_interleave(width), torch.ones(height * width, **options)], dim=1
    )  # (H*W, 3), row-major like the image
    grid = theta.reshape(n * 2, 3) @ centres.T  # (N*2, H*W)
    return grid.view(n, 2, height, width).permute(0, 2, 3, 1)


class RandomBoxFill(nn.Module):
    """Stretch each image's ink, with probability ``p``, to fill a square box: its bounding box is
    scaled on each axis on its own until both sides equal the longer one, about the box's centre.

    Some scanners and older digit sets normalise both axes of every digit, so that a 1 becomes a
    wide slanted bar and a 7 a wedge; MNIST keeps each digit's proportions. Ink is what is brighter
    than ``threshold`` (images in [0, 1], ink bright). A blank image is left as it is.
    """

    def __init__(self, p: float = 0.3, threshold: float = 0.2) -> None:
        super().__init__()
        if not 0 <= p <= 1 or not 0 <= threshold < 1:
            raise UserError(
                f"augment p={p}, threshold={threshold}: p must be a probability in [0, 1] and threshold in [0, 1)"
            )
        self.p, self.threshold = float(p), float(threshold)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        ink = images[:, 0] > self.threshold
        centre_x, half_x = ink_extent(ink.any(dim=1), width)  # columns with ink
        centre_y, half_y = ink_extent(ink.any(dim=2), height)  # rows with ink
        side = torch.maximum(half_x, half_y).clamp_min(1e-6)
        chosen = (torch.rand(n, device=images.device) < self.p) & ink.flatten(1).any(dim=1)
        # Output x reads input centre + (x - centre) * half / side: the box's shorter side is widened.
        scale_x, scale_y = (half_x / side).to(images.dtype), (half_y / side).to(images.dtype)
        zeros = torch.zeros_like(scale_x)
        theta = torch.stack(
            [
                torch.stack([scale_x, zeros, centre_x.to(images.dtype) * (1 - scale_x)], dim=1),
                torch.stack([zeros, scale_y, centre_y.to(images.dtype) * (1 - scale_y)], dim=1),
            ],
            dim=1,
        )
        filled = F.grid_sample(
            images, affine_grid(theta, images.shape), mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return torch.where(chosen.view(n, 1, 1, 1), filled, images)

    def extra_repr(self) -> str:
        return f"p={self.p}, threshold={self.threshold}"


def ink_extent(has_ink: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and half-length of the ink along one axis, in ``affine_grid``'s [-1, 1] coordinates
    (pixel edges at ``2 * k / size - 1``), from a (N, size) mask of the lines that hold ink."""
    first = has_ink.float().argmax(dim=1)
    last = size - 1 - has_ink.flip(dims=[1]).float().argmax(dim=1)
    start, end = 2 * first / size - 1, 2 * (last + 1) / size - 1
    return (start + end) / 2, (end - start) / 2


class RandomStrokeStyle(nn.Module):
    """Writing styles MNIST's scans rarely show, per sample: a thicker or thinner pen (grey-level
    dilation by a ``pen`` x ``pen`` square / erosion by 3x3) and a low-resolution round trip (the 28-pixel field reduced to
    ``low_res`` pixels by area averaging and enlarged again, bilinear), as a coarse scan or a
    small photo leaves a digit after ``mnist_budget.data.preprocess.mnist_style``.

    Each image is thickened with probability ``thick``, else thinned with ``thin``; then, with
    probability ``low_res_p``, blurred through one size drawn from ``low_res`` for the batch.
    """

    def __init__(
        self,
        thick: float = 0.2,
        thin: float = 0.1,
        low_res_p: float = 0.2,
        low_res: Sequence[int] = (10, 16),
        pen: int = 3,
    ) -> None:
        super().__init__()
        if not all(0 <= p <= 1 for p in (thick, thin, low_res_p)) or thick + thin > 1:
            raise UserError(
                f"augment thick={thick}, thin={thin}, low_res_p={low_res_p}: each must be a probability in [0, 1] "
                "and thick + thin at most 1"
            )
        if len(low_res) != 2 or not 4 <= low_res[0] <= low_res[1] <= 28:
            raise UserError(
                f"augment low_res={list(low_res)}: give [smallest, largest] sizes with 4 <= smallest <= largest <= 28"
            )
        if pen not in (3, 5, 7):
            raise UserError(f"augment pen={pen}: the thick pen's square is 3, 5 or 7 pixels wide")
        self.thick, self.thin, self.low_res_p = float(thick), float(thin), float(low_res_p)
        self.low_res = (int(low_res[0]), int(low_res[1]))
        self.pen = int(pen)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        draw = torch.rand(n, 1, 1, 1, device=images.device)
        thick = F.max_pool2d(images, self.pen, stride=1, padding=self.pen // 2)
        thin = -F.max_pool2d(-images, 3, stride=1, padding=1)
        images = torch.where(draw < self.thick, thick, torch.where(draw < self.thick + self.thin, thin, images))
        size = int(torch.randint(self.low_res[0], self.low_res[1] + 1, ()).item())
        coarse = F.interpolate(
            F.interpolate(images, size=size, mode="area"), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        coarse = coarse / coarse.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6) * images.amax(dim=(2, 3), keepdim=True)
        return torch.where(torch.rand(n, 1, 1, 1, device=images.device) < self.low_res_p, coarse, images)

    def extra_repr(self) -> str:
        return (
            f"thick={self.thick}, thin={self.thin}, low_res_p={self.low_res_p}, low_res={self.low_res}, pen={self.pen}"
        )


def check_augment(augment_config: DictConfig) -> nn.Module:
    """Build the augment group's pipeline and run it on two images: its own checks refuse a bad range
    (say a negative rotation), and an argument of the wrong type fails here rather than in training."""
    fix = "fix the augment.* override"
    try:
        augment = instantiate(augment_config)
        augmented = augment(torch.rand(2, 1, 28, 28))
    except Exception as err:  # noqa: BLE001 - Hydra wraps the component's own error
        raise find_user_error(err) or UserError(
            f"augment cannot be built or fails on a batch of images ({first_line(err.__cause__ or err).rstrip('.')}): {fix}"
        ) from err
    if tuple(augmented.shape) != (2, 1, 28, 28):
        raise UserError(f"augment turns 2 images of 1x28x28 into shape {tuple(augmented.shape)}: {fix}")
    return augment
