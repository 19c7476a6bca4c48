"""Every experiment overlay composes, builds within its budget and survives a fast_dev_run."""

from __future__ import annotations

import json

import pytest

from conftest import group_options
from mnist_budget.tasks.train import train


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiment_fast_dev_run(make_cfg, tmp_path, experiment):
    cfg = make_cfg(f"experiment={experiment}", "trainer.fast_dev_run=true", "callbacks.progress_bar.refresh_rate=0")
    assert cfg.experiment_name == experiment and cfg.claim
    metrics = train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == experiment
    assert results["params"] <= results["budget"] == cfg.model.budget
    assert 0.0 <= metrics["test/acc"] <= 1.0
