"""Every option of every config group composes and builds."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from conftest import group_options
from mnist_budget.training.builders import build_datamodule, build_trainer
from mnist_budget.training.module import Classifier
from mnist_budget.training.optim import build_optimizer

TRAIN_GROUPS = ["data", "model", "optim", "augment", "callbacks", "logger", "trainer"]


@pytest.mark.parametrize("group,option", [(group, option) for group in TRAIN_GROUPS for option in group_options(group)])
def test_every_group_option_composes_and_builds(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    module = Classifier.from_config(cfg)
    assert isinstance(build_optimizer(module.hparams.optim, module.parameters()), torch.optim.Optimizer)
    datamodule = build_datamodule(cfg)
    assert datamodule.batch_size == cfg.data.batch_size
    for name, entry in (cfg.get("callbacks") or {}).items():
        built = instantiate(entry)
        assert isinstance(built, Callback) or (name == "progress_bar" and built is None), (
            name
        )  # no bar without a terminal
    for entry in (cfg.get("logger") or {}).values():
        package = {"mlflow": "mlflow", "wandb": "wandb"}.get(option) if group == "logger" else None
        if package and importlib.util.find_spec(package) is None:
            pytest.skip(f"the optional {package} extra is not installed (tests/test_loggers.py checks the refusal)")
        assert isinstance(instantiate(entry), Logger)
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


@pytest.mark.parametrize("task", group_options("task"))
def test_every_task_config_names_its_function_and_its_check(make_cfg, task):
    from mnist_budget.tasks import task_function
    from mnist_budget.tasks.preflight import TASK_CHECKS

    cfg = make_cfg(f"task={task}")
    run, check = task_function(cfg), TASK_CHECKS[cfg.task_name]
    assert (
        callable(run) and callable(check) and run.__module__ == f"mnist_budget.tasks.{task}" and cfg.task_name == task
    )


@pytest.mark.parametrize("epochs", [4, 7])
def test_the_default_evaluation_validates_once_at_the_end_with_tta(make_cfg, epochs):
    cfg = make_cfg(f"trainer.max_epochs={epochs}")
    trainer = build_trainer(cfg)
    assert cfg.eval_tta is True and trainer.check_val_every_n_epoch == epochs
    assert Classifier.from_config(cfg).hparams.eval_tta is True


@pytest.mark.parametrize(("overrides", "dropout_on"), [((), "features"), (("experiment=robust",), "maps")])
def test_the_default_drops_pooled_features_and_robust_keeps_the_maps_it_was_measured_with(
    make_cfg, overrides, dropout_on
):
    net = instantiate(make_cfg(*overrides).model.net)
    on_features = isinstance(net.dropout, torch.nn.Dropout) and net.dropout.p > 0
    on_maps = any(isinstance(layer, torch.nn.Dropout) and layer.p > 0 for layer in net.features)
    assert (on_features, on_maps) == (dropout_on == "features", dropout_on == "maps")


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_records_and_robust_take_the_defaults_evaluation_and_the_references_keep_what_they_measured(
    make_cfg, experiment
):
    cfg = make_cfg(f"experiment={experiment}")
    trainer = build_trainer(cfg)
    if experiment.startswith("record_") or experiment in (
        "robust",
        "reader",
        "gpu_speedrun",
    ):  # the default's levers, applied
        assert cfg.eval_tta is True and trainer.check_val_every_n_epoch == cfg.trainer.max_epochs
        assert cfg.model.net.pool_first is True and cfg.callbacks.memory_format.layout == "auto"
    else:  # the references, as their tables were measured: every epoch, no TTA
        assert cfg.eval_tta is False and trainer.check_val_every_n_epoch == 1
