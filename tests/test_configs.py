"""Every option of every config group composes and builds."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hydra.utils import instantiate

from conftest import group_options
from mnist_budget.module import Classifier
from mnist_budget.tasks.train import build_datamodule, build_trainer

TRAIN_GROUPS = ["data", "model", "optim", "augment", "callbacks", "logger", "trainer"]


@pytest.mark.parametrize(
    "group,option", [(group, option) for group in TRAIN_GROUPS for option in group_options(group)]
)
def test_every_group_option_composes_and_builds(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    assert cfg.model.budget > 0
    module = Classifier.from_config(cfg)
    assert isinstance(module.build_optimizer(), torch.optim.Optimizer)
    datamodule = build_datamodule(cfg)
    assert datamodule.batch_size > 0
    for entry in (cfg.get("callbacks") or {}).values():
        assert instantiate(entry) is not None
    for entry in (cfg.get("logger") or {}).values():
        package = {"mlflow": "mlflow", "wandb": "wandb"}.get(option) if group == "logger" else None
        if package and importlib.util.find_spec(package) is None:
            pytest.skip(f"the optional {package} extra is not installed (tests/test_loggers.py checks the refusal)")
        assert instantiate(entry) is not None
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        return  # a GPU trainer cannot be built on a machine without one
    assert build_trainer(cfg).max_epochs >= 1  # trainer.precision=auto resolved as run.py does


def test_augmentations_change_images_but_keep_shape(make_cfg):
    images = torch.rand(8, 1, 28, 28)
    for option in group_options("augment"):
        cfg = make_cfg(f"augment={option}")
        if not cfg.augment:
            continue
        out = instantiate(cfg.augment)(images)
        assert out.shape == images.shape
        assert not torch.allclose(out, images)
