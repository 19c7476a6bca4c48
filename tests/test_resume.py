"""A run killed with SIGKILL mid-epoch and resumed with ``ckpt_path=last`` ends exactly as an
uninterrupted run with the same seed: same per-epoch metrics, same test accuracy, and the same
TensorBoard steps (none duplicated, none missing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, run_cli

BATCHES_PER_EPOCH = 60
RUN = (
    "trainer.max_epochs=3",
    f"trainer.limit_train_batches={BATCHES_PER_EPOCH}",
    "trainer.limit_val_batches=2",
    "data.batch_size=64",
    "trainer.log_every_n_steps=5",
    "callbacks.last_checkpoint.every_n_train_steps=7",
    "trainer.precision=32-true",
)


def history(run: Path) -> list[dict]:
    rows = json.loads((run / "results.json").read_text())["history"]
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: each tag's (step, value) pairs, with purged events left out."""
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def saved_step(path: Path) -> int:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except Exception:  # noqa: BLE001 - not written yet
        return -1


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_exactly(tmp_path, mnist_root):
    full = tmp_path / "uninterrupted"
    assert run_cli(*RUN, data_dir=mnist_root, run_dir=full).returncode == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "MNIST_BUDGET_DATA": str(mnist_root)}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), f"hydra.run.dir={killed}", *RUN],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    # Kill once a mid-epoch checkpoint of the second epoch exists; the process runs on a little.
    while saved_step(last) <= BATCHES_PER_EPOCH and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "results.json").exists()
    step = saved_step(last)
    assert step % BATCHES_PER_EPOCH != 0, "the checkpoint to resume from should be mid-epoch"
    trained_before = torch.load(last, map_location="cpu", weights_only=True)["callbacks"]["EpochHistory"]
    trained_before = trained_before["train_seconds"]

    resumed = run_cli(*RUN, "ckpt_path=last", data_dir=mnist_root, run_dir=killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"step {step})" in resumed.stdout + resumed.stderr  # "resuming .../last.ckpt (epoch 2, step N)"

    assert history(killed) == history(full)
    # train_seconds counts the killed part too: at least what the checkpoint had trained plus the
    # last epoch, which ran wholly after the resume.
    results = json.loads((killed / "results.json").read_text())
    assert trained_before > 0
    assert results["train_seconds"] >= trained_before + results["history"][-1]["seconds"] - 0.01
    test_acc = [json.loads((run / "results.json").read_text())["test_acc"] for run in (full, killed)]
    assert test_acc[0] == test_acc[1]
    assert scalars(killed) == scalars(full)
