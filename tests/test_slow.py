"""Full training of the default config on the real MNIST: >= 99.4 % on the official test set.

Run with ``uv run pytest -m slow``. The data folder is the one a run uses (conf/paths/default.yaml:
MNIST_BUDGET_DATA, else ./data, downloaded there when the machine has internet).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF_DIR, run_cli


def real_data_dir() -> Path:
    """The data folder as a run finds it (the one rule: conf/paths/default.yaml)."""
    return Path(str(OmegaConf.load(CONF_DIR / "paths" / "default.yaml").data_dir))


@pytest.mark.slow
def test_default_config_reaches_99_4_on_the_official_test_set(tmp_path):
    result = run_cli(data_dir=real_data_dir(), run_dir=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    print(
        f"\ndefault config: test accuracy {100 * results['test_acc']:.2f}% after {results['epochs']} epochs, "
        f"{results['train_seconds']:.1f} s of training ({results['seconds_per_epoch']:.1f} s/epoch), "
        f"{results['params']:,} parameters, {results['precision']}, {results['memory_layout']}, "
        f"on {results['hardware']['cpu']} ({results['hardware']['cpu_capability']})"
    )
    assert results["params"] <= results["budget"] == 20_000
    assert results["epochs"] <= 20
    assert results["test_acc"] >= 0.994
