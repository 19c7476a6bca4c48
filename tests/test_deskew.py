"""Deskewing by moments: a slanted stroke comes out upright, an upright one stays, and fast_cnn
can put it first without a parameter more."""

from __future__ import annotations

import pytest
import torch

from mnist_budget.data.sets import normalise
from mnist_budget.models import count_parameters
from mnist_budget.models.deskew import Deskew, deskew
from mnist_budget.models.fast_cnn import FastCNN


def slanted_bar(shear: float) -> torch.Tensor:
    """A 2-pixel-wide bar from row 4 to row 23 whose column moves ``shear`` pixels per row upwards."""
    image = torch.zeros(1, 1, 28, 28)
    for row in range(4, 24):
        col = round(13.5 + shear * (13.5 - row))
        image[0, 0, row, col : col + 2] = 1.0
    return image


def column_spread(image: torch.Tensor) -> float:
    """How far the ink's mean column moves from the top half to the bottom half."""
    cols = torch.arange(28.0)
    top, bottom = image[0, 0, 4:14], image[0, 0, 14:24]
    return float((top * cols).sum() / top.sum() - (bottom * cols).sum() / bottom.sum())


def test_a_slanted_stroke_is_made_upright_in_its_place():
    bar = slanted_bar(0.4)
    assert column_spread(bar) > 3
    upright = deskew(bar)
    assert abs(column_spread(upright)) < 0.5
    cols = torch.arange(28.0)
    assert abs(float((upright * cols).sum() / upright.sum() - (bar * cols).sum() / bar.sum())) < 0.5


def test_an_upright_stroke_is_left_alone():
    bar = slanted_bar(0.0)
    assert torch.allclose(deskew(bar), bar, atol=1e-5)


def test_fast_cnn_deskews_its_input_without_new_parameters():
    torch.manual_seed(0)
    plain, deskewing = FastCNN(), FastCNN(deskew=True)
    deskewing.load_state_dict(plain.state_dict())  # same keys: checkpoints of either load alike
    assert count_parameters(deskewing) == count_parameters(plain)
    plain.eval(), deskewing.eval()
    bar = normalise(slanted_bar(0.4))
    assert torch.allclose(deskewing(bar), plain(Deskew()(bar)))
    assert not torch.allclose(deskewing(bar), plain(bar))


@pytest.mark.slow  # an ONNX export (dynamo) takes seconds
def test_an_exported_deskewing_network_deskews_alike(tmp_path):
    from mnist_budget.inference.export import export_onnx, onnx_runner

    torch.manual_seed(0)
    net = FastCNN(deskew=True).eval()
    export_onnx(net, tmp_path / "model.onnx")
    images = normalise(torch.cat([slanted_bar(0.4), slanted_bar(-0.3), slanted_bar(0.0)]))
    with torch.no_grad():
        expected = net(images)
    assert (onnx_runner(tmp_path / "model.onnx", threads=1)(images) - expected).abs().max() < 1e-4
