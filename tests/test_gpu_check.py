"""benchmarks/gpu_check.sh --smoke on this machine: every step of the GPU check (docs/gpu.md) runs,
on the synthetic MNIST files and the packages already installed (no wheel is installed), and its
JSON and Markdown hold each step's figures.

The check is meant for a GPU; its smoke run, on the CPU where CI has no GPU, keeps it from rotting.
It runs every step in its own process (2 to 3 minutes on 2 cores), so it is in the slow suite.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["facts", "default", "speedrun", "levers", "twin", "profile", "tests"]
pytestmark = pytest.mark.slow


def test_the_smoke_run_of_the_gpu_check_runs_every_step_and_reports_each(mnist_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        **{key: value for key, value in os.environ.items() if key != "GPU_CHECK_STEPS"},
        "MNIST_BUDGET_DATA": str(mnist_root),
        "OUT": str(out),
        "PYTHON": sys.executable,
        "TMPDIR": str(tmp_path),  # the script's scratch folder and the runs' files
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    # What the device tool would bring back: four files, none deeper.
    assert sorted(path.name for path in out.iterdir()) == [
        "gpu_check.json",
        "gpu_check.log",
        "gpu_check.md",
        "trace_lightning.json.gz",
    ]
    assert "no wheel installed" in (out / "gpu_check.log").read_text()
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["smoke"] is True
    assert [(step["step"], step["exit"]) for step in report["steps"]] == [(step, 0) for step in STEPS]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert report["facts"]["device"] == device and report["facts"]["line"]

    default = report["default"]
    assert any(line.startswith("hardware: ") for line in default["log"]), default
    assert 0 <= default["test_acc"] <= 1 and default["epochs"] == 1

    seeds = report["speedrun"]["seeds"]
    assert [seed["seed"] for seed in seeds] == [1, 2]
    for seed in seeds:  # the probe's figures beside results.json's, three steps each
        assert seed["steps"] == 3 and seed["device"] == device, seed
        assert all(seed[key] > 0 for key in ("load_s", "first_step_s", "train_s", "val_s", "test_s", "fit_s")), seed
        assert seed["after_first_s"] == pytest.approx(seed["train_s"] - seed["first_step_s"])

    rows = report["levers"]["rows"]
    assert len(rows) == 10 and all(row["train_s"] > 0 and 0 <= row["test_acc"] <= 1 for row in rows), rows
    assert [row["settings"]["batch_size"] for row in rows[:3]] == [1000, 500, 2000]
    assert rows[3]["settings"]["precision"] == "32-true" and rows[4]["settings"]["layout"] == "contiguous"
    graphs = device == "cuda"  # a CPU has no CUDA graphs: the switch compiles without them
    assert [row["settings"]["compile"] for row in rows[-3:]] == [
        "default",
        "reduce-overhead" if graphs else "default",
        "max-autotune" if graphs else "max-autotune-no-cudagraphs",
    ]
    assert all(row["settings"]["compile"] is None for row in rows[:-3])

    twin = report["twin"]
    assert (twin["steps"], twin["warmup_steps"], twin["rounds"]) == (3, 1, 1)
    assert twin["plain_images_per_s"] > 0 and twin["lightning_images_per_s"] > 0
    assert twin["lightning_over_plain"] == pytest.approx(twin["lightning_images_per_s"] / twin["plain_images_per_s"])

    for loop in ("lightning", "plain"):
        part = report["profile"][loop]
        assert part["steps"] == 2 and part["wall_ms_per_step"] > 0 and part["top_cpu"], part
    with gzip.open(out / "trace_lightning.json.gz", "rt") as trace:
        assert json.load(trace)["traceEvents"]
    assert "passed" in report["tests"] and "failed" not in report["tests"]

    markdown = (out / "gpu_check.md").read_text()
    for heading in (
        "**A smoke run",
        "## `python run.py` (the default, unchanged)",
        "## `experiment=gpu_speedrun`, seeds 1, 2",
        "## Levers",
        "## Lightning against the plain loop",
        "## Where a step's time goes",
        "## Tests on the device",
        "## Not measured here",
    ):
        assert heading in markdown, heading
    assert "Not finished." not in markdown
