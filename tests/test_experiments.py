"""Every experiment overlay composes, passes the checks the command line runs (its network and
augmentation on a small batch, within its budget) and, in the slow suite, survives a fast_dev_run."""

from __future__ import annotations

import json

import pytest

from conftest import compose_cfg, group_options
from mnist_budget.tasks.preflight import check_run
from mnist_budget.tasks.train import train


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiment_passes_the_checks_before_a_run(make_cfg, tmp_path, experiment):
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.experiment_name == experiment and cfg.claim
    check_run(cfg, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiment_fast_dev_run(make_cfg, tmp_path, font_root, experiment):
    overrides = (f"experiment={experiment}", "trainer.fast_dev_run=true")
    if make_cfg(*overrides).data.get("extra_train"):  # draw its font digits from local fonts, not the registry's
        cfg = compose_cfg(tmp_path, font_root, *overrides, "data.extra_train.families=[]")
    else:
        cfg = make_cfg(*overrides)
    metrics = train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == experiment
    assert results["params"] <= results["budget"]
    assert results["test_acc"] == metrics["test/acc"]
