"""Every debug config (`debug=<name>`) runs end to end on a short schedule, in its own folder."""

from __future__ import annotations

import json

import pytest

from conftest import group_options
from mnist_budget.tasks.train import train

DEBUG = [name for name in group_options("debug") if name != "default"]


def test_the_four_debug_configs_exist():
    assert set(DEBUG) == {"fdr", "limit", "overfit", "profiler"}


@pytest.mark.slow  # real (short) runs: the slow suite runs every debug config
@pytest.mark.parametrize("name", ["fdr", "limit"])
def test_debug_config_runs_in_its_own_folder(make_cfg, tmp_path, name):
    cfg = make_cfg(f"debug={name}")
    assert f"/debug/{name}/" in cfg.hydra.run.dir
    train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["history"]) == results["epochs"] == (1 if name == "fdr" else 2)


@pytest.mark.slow
def test_profiler_config_runs(make_cfg, tmp_path):
    train(make_cfg("debug=profiler"))
    assert json.loads((tmp_path / "results.json").read_text())["epochs"] == 1


@pytest.mark.slow
def test_overfit_config_fits_its_batches(make_cfg, tmp_path):
    cfg = make_cfg("debug=overfit")
    assert "/debug/overfit/" in cfg.hydra.run.dir
    train(cfg)
    history = json.loads((tmp_path / "results.json").read_text())["history"]
    assert history[-1]["train/acc"] == 1.0  # the same 3 batches, learnt by heart
