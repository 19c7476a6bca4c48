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


def collect_results(paths: list[Path]) -> list[dict[str, Any]]:
    """Every results.json under the given run directories (searched recursively), by experiment name."""
    files = sorted({file for path in paths for file in ([path] if path.is_file() else path.rglob("results.json"))})
    return sorted((json.loads(file.read_text()) for file in files), key=lambda r: (r.get("experiment") or "", r["model"]))


def results_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per run: what it is, what it cost, what it reached, what was claimed."""
    lines = [
        "| experiment | model | params | epochs | best val acc | test acc (official 10k) | train s | s/epoch | claim |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.get('experiment') or r['model']} | {r['model']} | {r['params']:,} | {r['epochs']} "
            f"| {100 * r['best_val_acc']:.2f} % | **{100 * r['test_acc']:.2f} %** | {r['train_seconds']:.0f} "
            f"| {r['train_seconds'] / max(1, r['epochs']):.1f} | {r.get('claim') or ''} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m mnist_budget.report RUN_DIR ... [--output table.md]``: tabulate runs' results.json."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories or results.json files")
    parser.add_argument("--output", type=Path, help="write the table here as well as to stdout")
    args = parser.parse_args(argv)
    results = collect_results(args.runs)
    if not results:
        parser.error(f"no results.json under {', '.join(map(str, args.runs))}: point at run directories")
    table = results_table(results)
    print(table, end="")
    if args.output:
        args.output.write_text(table)


if __name__ == "__main__":
    main()
