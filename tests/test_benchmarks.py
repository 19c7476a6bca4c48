"""Smoke runs of the benchmark scripts (benchmarks/*.py): each one's ``--smoke`` version, in-process
on the synthetic MNIST files, and what it printed (the figures' lines, in their format).

The figures of a smoke run mean nothing (a step or two, on a busy test machine): these tests check
that every script still runs against the project's code and prints the lines a reader looks for.
They are in the slow suite (``pytest -m slow``, which CI runs too): together they take about 16 s
of a test process, a third of what the quick suite may cost on 2 cores.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
pytestmark = pytest.mark.slow

RATE = r"[\d,]+ images/s"  # a figure as the scripts print it, e.g. "   3524 images/s" or "12,345 images/s"


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as a module (benchmarks/ is not a package; its scripts import ``common``)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def bench_env(monkeypatch: pytest.MonkeyPatch, mnist_root: Path, tmp_path: Path) -> Path:
    """The scripts read their data from MNIST_BUDGET_DATA; their temporary folders go to tmp_path.

    One torch thread: the smoke figures mean nothing anyway, and on a machine busy with other
    work (a test run beside a training run) more threads than free cores are many times slower.
    """
    monkeypatch.setenv("MNIST_BUDGET_DATA", str(mnist_root))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    GlobalHydra.instance().clear()  # the scripts compose the config themselves
    yield tmp_path
    GlobalHydra.instance().clear()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(trained_run: Path) -> Path:
    """checkpoints/last.ckpt of the short training run the tests share (tests/conftest.py)."""
    return trained_run / "checkpoints" / "last.ckpt"


def hardware_lines(out: str) -> None:
    assert re.search(r"^hardware: .+ threads, torch \S+$", out, re.M), out


def settings_line(out: str) -> None:
    assert re.search(r"^model fast_cnn; precision \S+; layout (contiguous|channels_last)", out, re.M), out


def compute_line(out: str) -> None:
    """The achieved GFLOP/s beside the measured matrix-product peak (benchmarks/common.compute_note)."""
    line = (
        r"^compute: \d+\.\d\d MFLOP per trained image x \d+ images/s = \d+\.\d GFLOP/s; "
        r"a 2048x2048 matrix product here: fp32 \d+ GFLOP/s \(\d+\.\d %\)(, bf16 \d+ GFLOP/s \(\d+\.\d %\))?"
    )
    assert re.search(line, out, re.M), out


def test_inference(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_benchmark("inference").main(["--smoke", f"paths.output_dir={bench_env}"])
    out = capsys.readouterr().out
    hardware_lines(out)
    settings_line(out)
    from omegaconf import OmegaConf

    batch = OmegaConf.load(ROOT / "conf" / "data" / "mnist.yaml").eval_batch_size  # the benchmark uses the config's
    assert re.search(rf"^evaluation \(trainer.test, batch {batch}\): +{RATE} \(median\)$", out, re.M), out
    for batch in (128, 512):
        assert re.search(rf"^inference \(bare network, batch +{batch}\): +{RATE} \(median\)$", out, re.M), out


def test_lightning_overhead(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_benchmark("lightning_overhead").main(["--smoke", f"paths.output_dir={bench_env}"])
    out = capsys.readouterr().out
    hardware_lines(out)
    assert re.search(r"^round 1: plain +\d+ img/s \| lightning +\d+ img/s$", out, re.M), out
    assert "; batch 256, 1 timed steps per round, 1 rounds" in out, out
    assert re.search(rf"^plain PyTorch loop: +{RATE} \(median\)$", out, re.M), out
    assert re.search(rf"^project Lightning: +{RATE} \(median\)$", out, re.M), out
    overhead = r"^Lightning overhead: [+-]\d+\.\d % time per image \(plain/lightning = \d+\.\d{3}\)$"
    assert re.search(overhead, out, re.M), out


def test_levers(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_benchmark("levers").main(["--smoke", f"paths.output_dir={bench_env}"])
    out = capsys.readouterr().out
    hardware_lines(out)
    assert "1 timed steps, median of 1 rounds" in out, out
    rows = re.findall(rf"^(.+?) +{RATE}  \((\d+\.\d\d)x\) +\d+\.\d GFLOP/s$", out, re.M)
    names = [name.strip() for name, _ in rows]
    assert names[0].startswith("baseline (batch 256, fp32, NCHW") and rows[0][1] == "1.00", out
    compute_line(out)
    assert names[1:] == [
        "batch 128",
        "batch 512",
        "channels_last",
        "bf16 autocast",
        "channels_last + bf16 autocast",
        "1 thread",
    ], out


def test_throughput(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_benchmark("throughput").main(["--smoke", f"paths.output_dir={bench_env}"])
    out = capsys.readouterr().out
    hardware_lines(out)
    assert re.search(r"^round 1: classic +\d+ img/s \| project +\d+ img/s$", out, re.M), out
    assert re.search(rf"^classic pipeline \(A\): +{RATE} \(median\)$", out, re.M), out
    assert re.search(rf"^project \(B\): +{RATE} \(median\)$", out, re.M), out
    assert re.search(r"^B/A = \d+\.\d\dx$", out, re.M), out


def test_time_to_target(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_benchmark("time_to_target").main(["--smoke", "--seeds", "3", f"paths.output_dir={bench_env}"])
    out = capsys.readouterr().out
    hardware_lines(out)
    settings_line(out)
    assert re.search(r"^epoch 1: test \d+\.\d\d % at \d+\.\d s$", out, re.M), out
    assert re.search(
        r"^seed 3: (reached|did NOT reach 99\.4 %:) \d+\.\d\d % after 1 epochs, \d+\.\d s.* "
        r"\(one-time costs before the first batch: \d+\.\d s\)$",
        out,
        re.M,
    ), out
    compute_line(out)


def test_export_formats(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_benchmark("export_formats").main([str(checkpoint), "--smoke"])
    out = capsys.readouterr().out
    hardware_lines(out)
    assert "model fast_cnn; " in out, out
    rows = re.findall(r"^\| (.+?) \| (\d+\.\d{3}) \| (\d+\.\d{3}) \| ([\d,]+) \| (\d+\.\d\d)x \|$", out, re.M)
    assert [row[0] for row in rows] == ["eager PyTorch (fp32)", "ONNX Runtime", "torch.export program (.pt2)"], out
    assert rows[0][4] == "1.00"


def test_predict_quality(checkpoint: Path, bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = load_benchmark("predict_quality")
    kept = bench_env / "images"
    module.main([str(checkpoint), "--smoke", "--keep", str(kept)])
    out = capsys.readouterr().out
    hardware_lines(out)
    kinds = len(module.KINDS)
    assert f"model fast_cnn, {kinds} images in {kept}" in out, out
    rows = re.findall(r"^\| (.+?) \| (\d+) \| (\d+\.\d) % \| (\d+\.\d) % \|$", out, re.M)
    assert [(name, count) for name, count, _, _ in rows] == [(kind, "1") for kind in module.KINDS], out
    assert re.search(rf"^\| \*\*all\*\* \| {kinds} \| \*\*\d+\.\d %\*\* \| \d+\.\d % \|$", out, re.M), out
    assert len(list(kept.iterdir())) == kinds


def test_handwriting_styles(checkpoint: Path, bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = load_benchmark("handwriting_styles")
    kept = bench_env / "styles"
    module.main([str(checkpoint), str(checkpoint), "--smoke", "--tta", "--keep", str(kept)])
    out = capsys.readouterr().out
    hardware_lines(out)
    fonts = len(module.installed_fonts()[0])
    strokes = 2 * sum(len(styles) for styles in module.STYLES.values())
    total = 2 * strokes + (2 * 2 * 10 if fonts else 0) + 4 * 2 * 5  # strokes drawn, then scanned
    assert f"{total} images ({fonts} fonts)" in out, out
    assert len(list(kept.iterdir())) == total
    row = r" \| ".join([r"\d+\.\d"] * 4)  # two checkpoints, each without and with TTA
    for name in [f"digit {d}" for d in range(10)] + ["strokes", "degraded MNIST", "scanned strokes", "all"]:
        assert re.search(rf"^\| {name} \| \d+ \| {row} \|$", out, re.M), (name, out)
    assert re.search(r"^\| strokes: 1 flag and foot \| 2 \| ", out, re.M), out
    assert re.search(r"^\| scanned strokes: 9 curved tail \| 2 \| ", out, re.M), out
    assert len(re.findall(r"^- .+: \d+ of \d+ flagged", out, re.M)) == 4, out


def test_reader_sets(checkpoint: Path, bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uci = bench_env / "uci.npz"  # a stand-in for benchmarks/uci_digits.py's file (no scikit-learn in tests)
    np.savez(uci, images=np.random.default_rng(0).integers(0, 17, (30, 8, 8)), target=np.arange(30) % 10)
    kept = bench_env / "reader"
    load_benchmark("reader_sets").main([str(checkpoint), "--smoke", "--tta", "--uci", str(uci), "--keep", str(kept)])
    out = capsys.readouterr().out
    hardware_lines(out)
    sets = ["mnist-test", "mnist-test-box", "mnist-val-box", "uci", "uci-box"]
    for name in sets:
        assert re.search(rf"^{name}: 20 images, per digit \[[\d, ]+\]", out, re.M), out
    columns = [f"{name}{tta}" for name in sets for tta in ("", " +TTA")]
    assert "| digit | " + " | ".join(columns) + " |" in out, out
    cells = r" \| ".join([r"(\d+\.\d|-)"] * len(columns))
    for row in [*map(str, range(10)), "all"]:
        assert re.search(rf"^\| {row} \| {cells} \|$", out, re.M), (row, out)
    assert "| images | " + " | ".join(["20"] * len(columns)) + " |" in out, out
    assert len(list(kept.iterdir())) == 20 * len(sets)


def test_serve_load(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_benchmark("serve_load").main([str(checkpoint), "--smoke", "--backends", "torch", "--workers", "2"])
    out = capsys.readouterr().out
    hardware_lines(out)
    assert re.search(
        r"torch \(2 worker\(s\) x 1 thread\(s\)\): one client p50 [\d.]+ ms; 2 clients: \d+ requests/s, "
        r"p50 [\d.]+ ms, p99 [\d.]+ ms, 0 errors of 10, server memory [+-][\d.]+ MB",
        out,
    ), out


@pytest.mark.parametrize("what", ["pruners", "workers"])
def test_search(bench_env: Path, capsys: pytest.CaptureFixture[str], what: str) -> None:
    load_benchmark("search").main([what, "--smoke", "--pruners", "none,median"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    if what == "pruners":
        assert [row.split(" | ")[0] for row in rows] == ["| none", "| median"]
        assert all(re.search(r"\| 2 \(\d\) \| \d+ \| \d+ \| [\d.]+ % \|", row) for row in rows), out
    else:
        assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 2"] and all(row.endswith(" |") for row in rows), out
