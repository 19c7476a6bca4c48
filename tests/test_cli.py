"""``python run.py`` as a user runs it, in a subprocess: what the in-process tests cannot see.
(Each run that trains imports Lightning in a new process, seconds here: those are under -m slow.)

A refusal exits 2 with one ``error:`` line and no traceback before Hydra writes anything; a
problem found while running stops the same way, its traceback kept in the run's log; a run's
console holds its own lines once each.
"""

from __future__ import annotations

import json

import pytest

from conftest import SHORT_RUN, run_cli, snapshot


def error_line(result) -> str:
    """Exit 2, exactly one stderr line starting with ``error:``, no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Error in call to target" not in result.stderr, result.stderr[-3000:]
    assert "HYDRA_FULL_ERROR" not in result.stderr
    return errors[0]


def test_a_refused_command_exits_2_in_one_line_and_writes_nothing(earlier_run, mnist_root):
    before = snapshot(earlier_run)
    result = run_cli("optim.momentum=2", data_dir=mnist_root, run_dir=earlier_run)
    assert error_line(result) == "error: optim.momentum=2 is invalid: it must be in [0, 1)"
    assert snapshot(earlier_run) == before


@pytest.mark.slow  # a second run.py process (3 s); the refusal above keeps the quick suite's CLI check
def test_full_error_shows_the_traceback(tmp_path, mnist_root, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    result = run_cli("optim.lr=-1", data_dir=mnist_root, run_dir=tmp_path / "run")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "optim.lr=-1" in result.stderr


@pytest.mark.slow
def test_a_short_run_prints_its_own_lines_once(mnist_root, tmp_path):
    result = run_cli(*SHORT_RUN, data_dir=mnist_root, run_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model"] == "fast_cnn" and results["params"] == 19_634
    assert (tmp_path / ".hydra" / "config.yaml").is_file()
    console = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(console) == len(set(console)) <= 8, console  # each line once: no second handler, no summary
    assert console[0] == f"run folder: {tmp_path}"
    assert console[1].startswith("hardware: ") and "precision" in console[1]
    assert console[-1].startswith("fast_cnn: test accuracy") and "stopped by the schedule's end" in console[-1]
    assert str(tmp_path) in console[-1]
    log = (tmp_path / "run.log").read_text()
    assert "GPU available" in log and "Trainable params" in log  # Lightning's lines: in the log file only


@pytest.mark.slow
def test_a_problem_found_while_running_stops_in_one_line(tmp_path, mnist_root):
    run = tmp_path / "diverges"
    result = run_cli("optim.lr=1e6", "trainer.max_epochs=1", data_dir=mnist_root, run_dir=run)
    assert "the training loss became" in error_line(result) and "lower optim.lr" in error_line(result)
    assert not (run / "results.json").exists()
    log = (run / "run.log").read_text()
    assert "Traceback" in log and "callbacks/guards.py" in log  # the traceback is kept in the run's log


@pytest.mark.slow
def test_a_trainer_argument_that_lightning_refuses(tmp_path, mnist_root):
    result = run_cli("trainer.devices=0", data_dir=mnist_root, run_dir=tmp_path / "run")
    line = error_line(result)
    assert "trainer could not be built" in line and "devices=0" in line and "fix the trainer.* overrides" in line


def download_host_answers() -> bool:
    from mnist_budget.data.sets import DATASETS, download_problem

    return download_problem(DATASETS["mnist"].download_host, timeout=1.0) is None


def test_missing_data_offline_is_refused_before_the_run_folder(tmp_path):
    if download_host_answers():
        pytest.skip("this machine reaches MNIST's download host: the run would download the files")
    result = run_cli("trainer.max_epochs=1", data_dir=tmp_path / "empty", run_dir=tmp_path / "run")
    line = error_line(result)
    assert "MNIST is missing" in line and "cannot be downloaded" in line and "MNIST_BUDGET_DATA" in line
    assert not (tmp_path / "run").exists()
