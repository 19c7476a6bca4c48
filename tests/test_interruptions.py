"""A run stopped by SIGTERM or Ctrl-C saves last.ckpt at the step it stopped after, says so in one
line with the command that resumes it, and the resumed run ends as an uninterrupted one would."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, compose_cfg
from mnist_budget.errors import Interrupted
from mnist_budget.tasks.train import train

RUN = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=12",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.batch_size=64",
    "trainer.precision=32-true",
)
STOP_AT = 17  # the step whose end the signal is sent at: mid-way through the second epoch


def history(run: Path) -> list[dict]:
    rows = json.loads((run / "results.json").read_text())["history"]
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_root) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted")
    train(compose_cfg(run, mnist_root, *RUN))
    return run


def signal_at(step: int, sig: signal.Signals) -> str:
    return f"+callbacks.signal={{_target_: conftest.SignalAtStep, step: {step}, signum: {int(sig)}}}"


@pytest.fixture
def signal_handlers():
    """Lightning leaves SIGINT ignored after a Ctrl-C: give the test process its handlers back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


# SIGTERM stops at the end of the step it arrives in (Lightning checks after the step's callbacks);
# Ctrl-C is noted there and stops at the next step's end (the project's callback runs first).
@pytest.mark.slow  # a real run per signal, then its resumption: 4-8 s each
@pytest.mark.parametrize(
    ("name", "code", "saved"),
    [
        ("SIGTERM", 143, STOP_AT),
        pytest.param("SIGINT", 130, STOP_AT + 1, marks=pytest.mark.slow),
    ],  # Ctrl-C: as SIGUSR2 below
)
def test_a_signal_saves_the_step_and_the_resumed_run_ends_the_same(
    uninterrupted, tmp_path, mnist_root, signal_handlers, name, code, saved
):
    full = uninterrupted
    run = tmp_path / "interrupted"
    with pytest.raises(Interrupted) as stopped:
        train(compose_cfg(run, mnist_root, *RUN, signal_at(STOP_AT, getattr(signal, name))))
    line = str(stopped.value)
    assert stopped.value.exit_code == code
    assert f"interrupted by {name} in epoch 2, saved at step {saved} in {run / 'checkpoints' / 'last.ckpt'}" in line
    assert "\n" not in line and not (run / "results.json").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == saved

    command = shlex.split(line.split("resume with: ", 1)[1])
    # Python as the user ran it: uv run python (as under uv run pytest), else this interpreter's path.
    python = ["uv", "run", "python"] if os.environ.get("UV") else [sys.executable]
    assert command[: len(python) + 1] == [*python, "run.py"]
    assert command[-2:] == ["ckpt_path=last", f"hydra.run.dir={run}"]
    overrides = command[len(python) + 1 : -1]
    train(compose_cfg(run, mnist_root, *overrides))  # the printed command, in-process (it was run with RUN)
    assert history(run) == history(full)
    results = [json.loads((folder / "results.json").read_text()) for folder in (full, run)]
    assert results[0]["test_acc"] == results[1]["test_acc"]


@pytest.mark.slow
def test_ctrl_c_in_an_epochs_last_step_stops_after_the_epoch_and_resumes_the_same(
    uninterrupted, tmp_path, mnist_root, signal_handlers
):
    """Ctrl-C noted in an epoch's last step (sent as step 11 ends, the 12th is the last): the epoch
    ends and saves as usual, and the run stops before the next one; in the run's last step, the run
    simply ends."""
    run = tmp_path / "interrupted"
    with pytest.raises(Interrupted) as stopped:
        train(compose_cfg(run, mnist_root, *RUN, signal_at(11, signal.SIGINT)))
    assert f"interrupted by SIGINT in epoch 1, saved at step 12 in {run / 'checkpoints' / 'last.ckpt'}" in str(
        stopped.value
    )
    train(compose_cfg(run, mnist_root, *RUN, "ckpt_path=last"))
    assert history(run) == history(uninterrupted)
    last_step = tmp_path / "last-step"
    train(compose_cfg(last_step, mnist_root, *RUN, signal_at(23, signal.SIGINT)))  # no Interrupted: the run is over
    assert history(last_step) == history(uninterrupted)


@pytest.mark.slow
def test_a_schedulers_warning_is_handed_over_after_the_save_and_auto_resumes(
    uninterrupted, tmp_path, mnist_root, signal_handlers
):
    handed = []
    signal.signal(signal.SIGUSR2, lambda signum, frame: handed.append(signum))  # stands in for submitit's requeue
    job = tmp_path / "job"
    with pytest.raises(Interrupted) as stopped:
        train(compose_cfg(job, mnist_root, *RUN, "ckpt_path=auto", signal_at(STOP_AT, signal.SIGUSR2)))
    assert handed == [signal.SIGUSR2]
    assert stopped.value.exit_code == 128 + signal.SIGUSR2
    assert f"interrupted by SIGUSR2 in epoch 2, saved at step {STOP_AT + 1}" in str(stopped.value)
    train(compose_cfg(job, mnist_root, *RUN, "ckpt_path=auto"))  # the requeued job: the same command
    assert history(job) == history(uninterrupted)


def test_the_slurm_launcher_asks_for_a_warning_and_requeues(make_cfg):
    launcher = make_cfg("hydra/launcher=slurm").hydra.launcher
    assert launcher.signal_delay_s > 0 and launcher.max_num_timeout >= 1


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_real_signal_to_run_py(tmp_path, mnist_root, sig, code):
    run = tmp_path / "run"
    env = {**os.environ, "MNIST_BUDGET_DATA": str(mnist_root)}
    # Epochs of 600 steps: long enough that the signal, sent half a second into the second epoch,
    # lands in it on a fast machine too.
    slow = ("trainer.max_epochs=3", "trainer.limit_train_batches=600", "data.batch_size=64")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), f"hydra.run.dir={run}", *slow],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    log = run / "run.log"
    while process.poll() is None and time.monotonic() < deadline:  # until the first epoch is over
        if log.is_file() and "    1 |" in log.read_text():
            break
        time.sleep(0.2)
    time.sleep(0.5)  # into the second epoch
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted by")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert f"saved at step {step} in" in lines[0] and 600 < step < 1200
    assert not (run / "results.json").exists()
