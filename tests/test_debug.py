"""Every debug config (`debug=<name>`) runs end to end on a short schedule, in its own folder."""

from __future__ import annotations

import json

import pytest

from conftest import group_options
from mnist_budget.tasks.train import train

DEBUG = [name for name in group_options("debug") if name != "default"]


def test_the_four_debug_configs_exist():
    assert set(DEBUG) == {"fdr", "limit", "overfit", "profiler"}


@pytest.mark.parametrize("name", DEBUG)
def test_debug_config_runs_in_its_own_folder(make_cfg, tmp_path, name):
    cfg = make_cfg(f"debug={name}", "callbacks.progress_bar.refresh_rate=0")
    assert f"/debug/{name}/" in cfg.hydra.run.dir
    train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["epochs"] >= 1 and 0.0 <= results["test_acc"] <= 1.0


def test_overfit_config_fits_its_batches(make_cfg, tmp_path):
    train(make_cfg("debug=overfit", "callbacks.progress_bar.refresh_rate=0"))
    history = json.loads((tmp_path / "results.json").read_text())["history"]
    assert history[-1]["train/acc"] == 1.0  # the same 3 batches, learnt by heart
