"""Fixtures and helpers shared by the tests: MNIST-format idx files of synthetic digits (so
torchvision's real loader runs), composed configs, one short-run override list, a trained
checkpoint, the command line in-process (the preflight) and as a subprocess; and the rule that
under ``CI=true`` a real part the slow suite needs is never skipped, it fails the test."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def pytest_configure(config: pytest.Config) -> None:
    """Set up each process that runs tests. pytest-xdist's controller (``-n auto``, pyproject.toml)
    runs none, so it skips this and never imports torch (5-10 s on 2 cores, before any worker starts)."""
    if config.getoption("numprocesses", default=None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import torch

    from mnist_budget.hardware import flush_denormals

    # The test processes share the cores: more torch threads than cores make every training step
    # several times slower.
    if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
        torch.set_num_threads(max(1, torch.get_num_threads() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    # Denormal floats computed as zero, as run.py does by default (flush_denormal in conf/config.yaml)
    # and as the benchmarks the tests call in this process set it.
    flush_denormals(True)


# CI (.ci/run, which sets CI=true, as GitHub's runners do) promises every real part the slow suite
# drives: PostgreSQL, the SLURM cluster, Chromium, the npm package of the web export. There a test
# that cannot reach one fails; elsewhere it skips, saying why (pytest -rs lists the reasons).
IN_CI = os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the test, since a real part it needs is not here (``reason`` says which and how to get
    it), or under ``CI=true``, which promised the part, fail it."""
    __tracebackhide__ = True  # the report points at the test's line that called this
    if IN_CI:
        pytest.fail(f"CI=true promises this, and it is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under ``CI=true`` a skipped slow test is a failed one, whatever skipped it (a ``skipif``
    mark, ``importorskip``, a fixture's ``pytest.skip``): CI runs the slow suite to run it all.
    The quick suite's skips (a GPU here, an optional extra not installed) stay skips."""
    report = yield
    if IN_CI and report.skipped and item.get_closest_marker("slow") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true: the slow suite runs every test, and this one skipped: {reason}"
    return report


# The one short run for tests: a few batches of every stage, the whole loop (checkpoints, logs,
# schedule, test, figures) in seconds.
SHORT_RUN = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.eval_batch_size=500",  # a validation or test batch of 500 images, not 2,000
)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array of unsigned bytes in MNIST's idx format (big-endian header, then raw bytes)."""
    header = (0x0800 + array.ndim).to_bytes(4, "big")
    header += b"".join(dim.to_bytes(4, "big") for dim in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_digits(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: label k lights a 6x6 square at one of ten fixed places, plus noise."""
    labels = rng.integers(0, 10, size=count)
    images = rng.integers(0, 60, size=(count, 28, 28), dtype=np.uint8)
    for label in range(10):
        row, col = 3 + 8 * (label // 4), 2 + 6 * (label % 4)
        images[labels == label, row : row + 6, col : col + 6] = 255
    return images, labels


def write_mnist(root: Path, train_count: int = 60_000, test_count: int = 10_000) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        images, labels = synthetic_digits(count, rng)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder ``name``, built by ``build`` once per test run and then shared read-only: under
    pytest-xdist each worker has its own base temp folder, and their common parent holds it (a
    file lock lets one worker build while the others wait), so that no worker repeats the work."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / name, root / f"{name}.built"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with full-size (60,000 / 10,000) synthetic MNIST idx files (read-only)."""
    return built_once(tmp_path_factory, "mnist", write_mnist)


def with_fonts(root: Path, data_root: Path) -> Path:
    """A data root at ``root``: ``data_root``'s MNIST files, and two fonts from matplotlib in
    fonts/ to draw digits with (``extra_train=fonts`` without downloading any: pass
    ``data.extra_train.families=[]``)."""
    import matplotlib

    (root / "fonts").mkdir(parents=True, exist_ok=True)
    (root / "MNIST").symlink_to(data_root / "MNIST", target_is_directory=True)
    for face in ("DejaVuSans", "DejaVuSerif-Bold"):
        shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{face}.ttf", root / "fonts")
    return root


@pytest.fixture(scope="session")
def font_root(tmp_path_factory: pytest.TempPathFactory, mnist_root: Path) -> Path:
    return with_fonts(tmp_path_factory.mktemp("fonts"), mnist_root)


def group_options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


@functools.cache
def _composed(data_dir: str, overrides: tuple[str, ...]) -> DictConfig:
    """Hydra's compose, once per (data folder, overrides) in a test process: each compose reads and
    merges every YAML file again (about 0.15 s on 2 cores), and many tests share their overrides."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=[f"paths.data_dir={data_dir}", *overrides], return_hydra_config=True
        )
    GlobalHydra.instance().clear()
    return cfg


def compose_cfg(output_dir: Path, data_dir: Path, *overrides: str) -> DictConfig:
    """The real config composed with overrides, as a run in ``output_dir`` on the data in ``data_dir`` sees it
    (a copy of its own: a test may change it)."""
    cfg = copy.deepcopy(_composed(str(data_dir), overrides))
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path, mnist_root: Path) -> Callable[..., DictConfig]:
    """Compose the real config with overrides, its outputs in tmp_path and its data in the fixture."""
    return lambda *overrides: compose_cfg(tmp_path, mnist_root, *overrides)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, mnist_root: Path) -> Path:
    """The folder of a short real training run (synthetic digits): results.json, checkpoints/last.ckpt
    (read-only: one run serves every worker)."""
    from mnist_budget.tasks.train import train

    # 5 steps (also the short schedule's smoke test); the whole test set, which eval and export score
    # too, each image once (eval_tta=false: 5x less work; tests/test_tasks.py checks eval with TTA)
    def run(folder: Path) -> None:
        train(compose_cfg(folder, mnist_root, *SHORT_RUN, "trainer.limit_test_batches=1.0", "eval_tta=false"))

    return built_once(tmp_path_factory, "trained", run)


def preflight_refusal(*args: str, run_dir: Path, data_dir: Path) -> str:
    """The one-line UserError that the command line's preflight raises for ``args`` (in-process)."""
    from mnist_budget.errors import UserError
    from mnist_budget.tasks.preflight import preflight

    flags = [arg for arg in args if arg.startswith("-")]
    overrides = [arg for arg in args if not arg.startswith("-")]
    with pytest.raises(UserError) as refused:
        preflight([*flags, f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}", *overrides], CONF_DIR)
    message = str(refused.value)
    assert "\n" not in message, message
    return message


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def earlier_run(tmp_path: Path) -> Path:
    """A finished run's folder: the bad command is pointed at it and must not touch it."""
    folder = tmp_path / "earlier-run"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (folder / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (folder / "run.log").write_text("the earlier run's log\n")
    (folder / "results.json").write_text('{"test_acc": 0.99}\n')
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "epoch_007.ckpt").write_bytes(b"weights of the earlier run")
    return folder


def run_cli(*args: str, data_dir: Path | str, run_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python run.py`` the way a user does, in a subprocess (flags such as -m first)."""
    env = {**os.environ, "MNIST_BUDGET_DATA": str(data_dir)}
    flags = [arg for arg in args if arg.startswith("-")]
    overrides = [arg for arg in args if not arg.startswith("-")]
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *flags, f"hydra.run.dir={run_dir}", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class SignalAtStep:
    """A callback (``+callbacks.signal={_target_: conftest.SignalAtStep, step: N, signum: S}``) that
    sends this process the signal ``signum`` as training step ``step`` ends, as a user or a scheduler would."""

    def __new__(cls, step: int, signum: int):  # a Lightning Callback, made here so conftest imports no Lightning
        from lightning.pytorch.callbacks import Callback

        class Sender(Callback):
            def on_train_batch_end(self, trainer, *args) -> None:
                if trainer.global_step == step:
                    os.kill(os.getpid(), signum)

        return Sender()


class _RunsCode:
    """Unpickling this runs a shell command: a checkpoint loader must refuse it without running it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A .ckpt whose unpickling would create ``marker`` (torch.load with weights_only=False runs it)."""
    import pickle

    path.write_bytes(pickle.dumps({"state_dict": {}, "payload": _RunsCode(marker)}))
    return path
