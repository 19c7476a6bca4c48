"""Export's test figure says how it was scored: each image once (one forward pass), and, where the
checkpoint's run scored with test-time augmentation (``eval_tta``, training's default), with that
TTA too, so that it compares with the run's figure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnist_budget.data.loading import load_mnist, to_float_images
from mnist_budget.data.sets import DATASETS
from mnist_budget.inference.classify import Predictor
from mnist_budget.inference.export import verify
from mnist_budget.tasks.export import accuracy_line


def tiny_net() -> nn.Module:
    """Cheap and not shift-invariant: TTA changes some of its answers."""
    torch.manual_seed(0)
    return nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(49, 10)).eval()


def test_verify_scores_the_file_with_the_runs_tta_when_asked(mnist_root):
    net = tiny_net()
    once = verify(net, net, mnist_root, 1e-6)
    assert "test_acc_tta" not in once
    both = verify(net, net, mnist_root, 1e-6, tta=True)
    assert both["test_acc"] == once["test_acc"]
    # The same TTA as training's eval_tta, predict and serve: the one inference path's.
    images, labels = load_mnist(mnist_root, train=False)
    predicted = Predictor(net, DATASETS["mnist"], tta=True)(to_float_images(images)).argmax(1)
    assert both["test_acc_tta"] == pytest.approx(float((predicted == labels).float().mean()), abs=2e-4)
    assert both["test_acc_tta"] != both["test_acc"]


def test_exports_line_says_the_figure_is_without_tta_and_gives_the_runs_scoring_beside_it():
    verified = {"test_acc": 0.9939, "test_acc_tta": 0.9955}
    line = accuracy_line(verified, run_tta=True)
    assert line.startswith("test accuracy 99.39% without TTA (one forward pass per image); 99.55% with TTA")
    assert "four 1-pixel shifts" in line
    line = accuracy_line({"test_acc": 0.9939}, run_tta=False)
    assert line == "test accuracy 99.39% without TTA (one forward pass per image), as the checkpoint's run scored"
