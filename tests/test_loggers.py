"""Optional trackers: logger=mlflow (local SQLite store) and logger=wandb (offline unless logged in).

Where the extra is installed (`uv sync --extra mlflow --extra wandb`) a short run logs to it;
where it is not, the command is refused in one line naming the extra to install.
"""

from __future__ import annotations

import importlib.util

import pytest

from conftest import SHORT_RUN, preflight_refusal
from mnist_budget.tasks.train import train
from mnist_budget.training.loggers import wandb_logged_in


def refused_for_missing(package: str, *args: str, run_dir, data_dir) -> None:
    line = preflight_refusal(*args, run_dir=run_dir, data_dir=data_dir)
    assert f"needs the {package} package: uv sync --extra {package}" in line


def test_mlflow_logs_to_a_local_store(make_cfg, mnist_root, tmp_path):
    logs = tmp_path / "outputs"
    args = ("logger=[tensorboard,mlflow]", f"paths.log_dir={logs}", *SHORT_RUN)
    if importlib.util.find_spec("mlflow") is None:
        refused_for_missing("mlflow", *args, run_dir=tmp_path / "run", data_dir=mnist_root)
        return
    train(make_cfg(*args))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{logs / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_budget").experiment_id])
    assert {"test/acc", "val/acc", "hp/test_acc"} <= set(run.data.metrics)
    assert (tmp_path / "tensorboard").is_dir()  # both loggers at once


def test_wandb_runs_offline_unless_logged_in(make_cfg, mnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert not wandb_logged_in()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_logged_in()
    monkeypatch.delenv("WANDB_API_KEY")
    if importlib.util.find_spec("wandb") is None:
        refused_for_missing("wandb", "logger=wandb", *SHORT_RUN, run_dir=tmp_path / "run", data_dir=mnist_root)
        return
    train(make_cfg("logger=wandb", *SHORT_RUN))
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb"))  # the run's data, for `wandb sync` later


@pytest.mark.parametrize("logger", ["mlflow", "wandb"])
def test_a_missing_tracker_package_is_named(make_cfg, monkeypatch, logger):
    from mnist_budget.errors import UserError
    from mnist_budget.tasks.preflight import check_trackers

    cfg = make_cfg(f"logger={logger}")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == logger else real_find_spec(name, *a)
    )
    with pytest.raises(UserError, match=rf"logger={logger} needs the {logger} package: uv sync --extra {logger}"):
        check_trackers(cfg)
