"""The augmentations: per-sample rotation, translation and aspect within the configured ranges;
stroke styles (thicker, thinner, coarser) that keep the digit where it is."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mnist_budget.data.augment import RandomBoxFill, RandomShiftRotate, RandomStrokeStyle, affine_grid
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


@pytest.mark.parametrize("shape", [(256, 1, 28, 28), (3, 1, 20, 28), (5, 2, 7, 9)])
def test_affine_grid_is_torchs_as_one_matrix_product(shape):
    theta = torch.randn(shape[0], 2, 3, generator=torch.Generator().manual_seed(0))
    expected = F.affine_grid(theta, list(shape), align_corners=False)
    assert torch.allclose(affine_grid(theta, shape), expected, atol=1e-5)


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


def widths(images: torch.Tensor) -> torch.Tensor:
    """How many columns of each image hold ink."""
    return (images[:, 0].amax(dim=1) > 0.5).sum(dim=1).float()


def test_aspect_widens_and_narrows_within_the_factor_and_leaves_heights():
    torch.manual_seed(0)
    bars = torch.zeros(2000, 1, 28, 28)
    bars[:, :, 4:24, 4:24] = 1.0  # a 20x20 square
    out = RandomShiftRotate(0, (0, 0), aspect=1.3)(bars)
    width = widths(out)
    assert width.min() >= 20 / 1.3 - 1 and width.max() <= 20 * 1.3 + 1
    assert width.min() < 17 and width.max() > 24  # both ways, most of the range
    heights = (out[:, 0].amax(dim=2) > 0.5).sum(dim=1)
    assert (heights == 20).all()


def test_aspect_one_draws_nothing_more_so_the_default_stream_is_unchanged():
    """With aspect 1 the module draws the angles and the shifts and nothing else: the random
    stream after it is where it was before the aspect option existed."""
    images = torch.rand(8, 1, 28, 28)
    torch.manual_seed(1)
    RandomShiftRotate(10, (0.1, 0.1), aspect=1.0)(images)
    after_module = torch.rand(3)
    torch.manual_seed(1)
    torch.empty(8).uniform_(-10, 10), torch.empty(8, 2).uniform_(-1, 1)  # the angles, then the shifts
    assert torch.equal(after_module, torch.rand(3))
    torch.manual_seed(1)
    RandomShiftRotate(10, (0.1, 0.1), aspect=1.3)(images)
    assert not torch.equal(after_module, torch.rand(3))  # aspect > 1 draws its factors too


def test_stroke_style_thickens_thins_and_coarsens_in_place():
    torch.manual_seed(0)
    images = torch.zeros(3000, 1, 28, 28)
    images[:, :, 6:22, 12:15] = 1.0  # a vertical stroke, 3 pixels wide
    only_thick = RandomStrokeStyle(thick=1.0, thin=0.0, low_res_p=0.0)(images)
    assert (widths(only_thick) == 5).all()
    assert (widths(RandomStrokeStyle(thick=1.0, thin=0.0, low_res_p=0.0, pen=5)(images)) == 7).all()
    only_thin = RandomStrokeStyle(thick=0.0, thin=1.0, low_res_p=0.0)(images)
    assert (widths(only_thin) == 1).all()
    mixed = RandomStrokeStyle(thick=0.2, thin=0.1, low_res_p=0.0)(images)
    share = {w: float((widths(mixed) == w).float().mean()) for w in (1, 3, 5)}
    assert share[5] == pytest.approx(0.2, abs=0.03) and share[1] == pytest.approx(0.1, abs=0.03)
    coarse = RandomStrokeStyle(thick=0.0, thin=0.0, low_res_p=1.0, low_res=(8, 8))(images)
    assert not torch.allclose(coarse, images, atol=0.05)  # blurred through 8 pixels
    x, y = centres_of_mass(coarse)
    assert (x - 13).abs().max() < 0.6 and (y - 13.5).abs().max() < 0.6  # the digit stays where it was
    assert torch.allclose(coarse.amax(dim=(2, 3)), images.amax(dim=(2, 3)))  # ink keeps its brightness


@pytest.mark.parametrize(
    "arguments", [{"thick": 1.2}, {"thick": 0.6, "thin": 0.6}, {"low_res": (3, 10)}, {"low_res": (16, 10)}, {"pen": 4}]
)
def test_bad_stroke_styles_are_user_errors(arguments):
    with pytest.raises(UserError, match="augment"):
        RandomStrokeStyle(**arguments)


def ink_box(image: torch.Tensor) -> tuple[int, int]:
    """Width and height of the pixels brighter than 0.2."""
    ink = image[0] > 0.2
    return int(ink.any(dim=0).sum()), int(ink.any(dim=1).sum())


def test_box_fill_stretches_a_thin_stroke_to_a_square_about_its_centre():
    images = torch.zeros(3, 1, 28, 28)
    images[:, :, 4:24, 12:16] = 1.0  # a 1: 4 wide, 20 tall
    filled = RandomBoxFill(p=1.0)(images)
    width, height = ink_box(filled[0])
    assert height == 20 and 19 <= width <= 22  # as wide as it is tall (bilinear edges may add one)
    xs = torch.arange(28.0)
    centre = (filled[0, 0].sum(0) * xs).sum() / filled[0, 0].sum()
    assert abs(float(centre) - 13.5) < 0.5  # about the box's centre, where the stroke was


def test_box_fill_leaves_images_it_does_not_draw_and_blank_ones_alone():
    images = torch.zeros(4, 1, 28, 28)
    images[:2, :, 4:24, 12:16] = 1.0
    assert torch.equal(RandomBoxFill(p=0.0)(images), images)
    assert torch.equal(RandomBoxFill(p=1.0)(images)[2:], images[2:])  # no ink: nothing to stretch


@pytest.mark.parametrize("arguments", [{"p": 1.5}, {"p": -0.1}, {"threshold": 1.0}])
def test_bad_box_fills_are_user_errors(arguments):
    with pytest.raises(UserError, match="augment p="):
        RandomBoxFill(**arguments)
