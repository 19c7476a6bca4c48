"""Results of a run: results.json and the training-curve plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # runs write plots on machines without a display
import matplotlib.pyplot as plt  # noqa: E402


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write results atomically, so an interrupted run never leaves a half-written file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train against validation."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for stage in ("train", "val"):
        ax_loss.plot(epochs, [row.get(f"{stage}/loss", math.nan) for row in history], marker="o", label=stage)
        ax_acc.plot(epochs, [100 * row.get(f"{stage}/acc", math.nan) for row in history], marker="o", label=stage)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax_acc.axhline(99.4, color="grey", linestyle="--", linewidth=1, label="99.4 %")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
