"""``python run.py`` as a user runs it: a fast_dev_run, and one-line errors for bad input."""

from __future__ import annotations

import json

from conftest import run_cli


def test_fast_dev_run_through_run_py(mnist_root, tmp_path):
    result = run_cli("trainer.fast_dev_run=true", data_dir=mnist_root, run_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model"] == "fast_cnn" and results["params"] == 19_634
    assert results["precision"] in ("bf16-mixed", "32-true") and results["hardware"]["threads"] >= 1
    assert (tmp_path / ".hydra" / "config.yaml").is_file()


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_unknown_group_option(mnist_root, tmp_path):
    result = run_cli("model=resnet9000", data_dir=mnist_root, run_dir=tmp_path)
    assert result.returncode != 0
    assert "unknown model option 'resnet9000': choose one of" in error_line(result)
    assert "gap_cnn" in error_line(result)


def test_negative_learning_rate(mnist_root, tmp_path):
    result = run_cli("optim.lr=-1", data_dir=mnist_root, run_dir=tmp_path)
    assert result.returncode != 0
    assert "optim.lr=-1 is invalid: it must be a positive number" in error_line(result)


def test_budget_smaller_than_the_model(mnist_root, tmp_path):
    result = run_cli("model.budget=5000", data_dir=mnist_root, run_dir=tmp_path)
    assert result.returncode != 0
    assert "over its budget of 5,000" in error_line(result)


def test_missing_data_offline(tmp_path):
    # No mirror answers on this machine: the download fails and the message says what to do.
    result = run_cli("trainer.max_epochs=1", data_dir=tmp_path / "empty", run_dir=tmp_path / "run")
    assert result.returncode != 0
    line = error_line(result)
    assert "MNIST is missing" in line and "MNIST_BUDGET_DATA" in line


def test_user_error_raised_inside_instantiate_is_one_line(mnist_root, tmp_path):
    # The augmentation raises UserError while Hydra instantiates it; Hydra wraps it in its own error.
    result = run_cli("augment._args_.0.degrees=-1", data_dir=mnist_root, run_dir=tmp_path)
    assert result.returncode == 2
    assert "augment degrees=-1" in error_line(result)
    assert "Traceback" not in result.stderr and "Error in call to target" not in result.stderr
