"""The default augmentation: per-sample rotation and translation within the configured ranges."""

from __future__ import annotations

import math

import pytest
import torch

from mnist_budget.augment import RandomShiftRotate
from mnist_budget.errors import UserError

CENTRE = 13.5  # grid_sample with align_corners=False rotates about the image's geometric centre


def centres_of_mass(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = images[:, 0].sum((1, 2))
    return (images[:, 0] * xs).sum((1, 2)) / mass, (images[:, 0] * ys).sum((1, 2)) / mass


def dots(count: int, row: int, col: int) -> torch.Tensor:
    images = torch.zeros(count, 1, 28, 28)
    images[:, :, row, col] = 1.0
    return images


def test_no_rotation_no_shift_is_the_identity():
    images = torch.rand(4, 1, 28, 28)
    assert torch.allclose(RandomShiftRotate(0, (0, 0))(images), images, atol=1e-5)


def test_shifts_stay_within_the_fraction_and_cover_it():
    torch.manual_seed(0)
    x, y = centres_of_mass(RandomShiftRotate(0, (0.1, 0.05))(dots(2000, 14, 14)))
    dx, dy = x - 14, y - 14
    assert dx.abs().max() <= 2.8 + 1e-3 and dy.abs().max() <= 1.4 + 1e-3
    assert dx.min() < -2.5 and dx.max() > 2.5 and dy.abs().max() > 1.2  # the whole range is used


def test_rotations_stay_within_the_angle_and_differ_per_sample():
    torch.manual_seed(0)
    x, y = centres_of_mass(RandomShiftRotate(10, (0, 0))(dots(2000, 14, 24)))
    before = math.atan2(14 - CENTRE, 24 - CENTRE)
    turned = torch.rad2deg(torch.atan2(y - CENTRE, x - CENTRE) - before)
    assert turned.abs().max() <= 10.5  # bilinear resampling blurs the dot's centre a little
    assert turned.min() < -8 and turned.max() > 8
    assert turned.std() > 3  # each image draws its own angle


@pytest.mark.parametrize("degrees,translate", [(-1, (0.1, 0.1)), (10, (1.5, 0.1)), (10, (0.1,))])
def test_bad_ranges_are_user_errors(degrees, translate):
    with pytest.raises(UserError, match="augment degrees"):
        RandomShiftRotate(degrees, translate)
