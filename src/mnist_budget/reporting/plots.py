"""A run's figures: training curves, the test set's confusion matrix and its misclassified digits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # runs write plots on machines without a display
import matplotlib.pyplot as plt  # noqa: E402 - pyplot after the backend is chosen
from PIL import Image  # noqa: E402 - kept with the other imports


def render(fig: plt.Figure, path: Path) -> np.ndarray:
    """Draw the figure once, save it as a PNG and close it; return its RGB pixels (for TensorBoard,
    which would otherwise draw it a second time)."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    Image.fromarray(pixels).save(path)
    return pixels


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
    render(fig, path)


def plot_confusion_matrix(matrix: list[list[int]]) -> plt.Figure:
    """Counts of (true digit, predicted digit) on the test set; off-diagonal cells are the mistakes."""
    size = len(matrix)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    errors = [[count if row != col else 0 for col, count in enumerate(line)] for row, line in enumerate(matrix)]
    image = ax.imshow(errors, cmap="Reds")
    for row in range(size):
        for col in range(size):
            count = matrix[row][col]
            if count:
                ax.text(
                    col,
                    row,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if row != col else "tab:blue",
                    fontweight="bold" if row == col else None,
                )
    total = sum(map(sum, matrix))
    wrong = total - sum(matrix[i][i] for i in range(size))
    ax.set(
        xticks=range(size),
        yticks=range(size),
        xlabel="predicted digit",
        ylabel="true digit",
        title=f"Confusion matrix: {wrong} of {total:,} wrong (colour: mistakes)",
    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_misclassified(
    images: list[Any], labels: list[int], predicted: list[int], confidence: list[float], limit: int = 64
) -> plt.Figure:
    """A grid of the test images the model got wrong, most confident mistakes first.

    Drawn as one mosaic image with a caption per tile: one axes per digit costs seconds per run."""
    order = sorted(range(len(labels)), key=lambda i: -confidence[i])[:limit]
    columns = 8
    rows = max(1, math.ceil(len(order) / columns))
    cell = 28 + 12  # the digit, then room for its caption
    mosaic = np.ones((rows * cell, columns * cell), dtype=np.float32)  # white paper between digits
    fig, ax = plt.subplots(figsize=(columns * 1.3, rows * 1.5))
    for slot, index in enumerate(order):
        top, left = (slot // columns) * cell + 10, (slot % columns) * cell + 6
        mosaic[top : top + 28, left : left + 28] = 1.0 - np.asarray(images[index], dtype=np.float32)  # ink dark
        ax.text(
            left + 14,
            top - 2,
            f"{labels[index]}→{predicted[index]} {100 * confidence[index]:.0f}%",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    ax.set_title(
        f"Misclassified test images (true→predicted, confidence): {len(labels)}"
        + (f", the {limit} most confident shown" if len(labels) > limit else ""),
        fontsize=9,
    )
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.94)
    return fig


def write_test_figures(report: dict[str, Any], output_dir: Path, loggers: list[Any] = (), step: int = 0) -> None:
    """confusion_matrix.png and misclassified.png in the run folder, and the same images in TensorBoard."""
    mistakes = report["mistakes"]
    figures = {
        "confusion_matrix": plot_confusion_matrix(report["confusion_matrix"]),
        "misclassified": plot_misclassified(
            [m["image"].numpy() for m in mistakes],
            [m["label"] for m in mistakes],
            [m["predicted"] for m in mistakes],
            [m["confidence"] for m in mistakes],
        ),
    }
    images = {name: render(figure, output_dir / f"{name}.png") for name, figure in figures.items()}
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            for name, pixels in images.items():
                experiment.add_image(f"test/{name}", pixels, global_step=step, dataformats="HWC")
            experiment.flush()


def number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def draw_ranges(ax: plt.Axes, groups: list[dict[str, Any]], xlabel: str) -> None:
    """Each group's mean test accuracy as a point with its min–max as a bar, at its ``x`` (numbers, or
    categories in the given order), labelled; a group's ``claim`` (a published figure) as a red cross."""
    xs = [number(group["x"]) for group in groups]
    numeric = all(x is not None for x in xs)
    if not numeric:
        xs = list(range(len(groups)))
        ax.set_xticks(xs, [str(group["x"]) for group in groups], rotation=30, ha="right")
    elif min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    span = (max(xs) - min(xs)) or 1
    previous = None  # the last label's x: a label close to it is lifted, so that the two do not overlap
    for x, group in sorted(zip(xs, groups, strict=True), key=lambda pair: pair[0]):
        low, high = group["mean"] - group["min"], group["max"] - group["mean"]
        ax.errorbar(x, group["mean"], yerr=[[low], [high]], fmt="o", color="tab:blue", capsize=4)
        if group.get("label"):
            near = previous is not None and ax.get_xscale() != "log" and (x - previous) / span < 0.08
            top = max(group["max"], group.get("claim") or group["max"])  # above the bar and the claim's cross
            ax.annotate(
                group["label"],
                (x, top),
                textcoords="offset points",
                xytext=(0, 18 if near else 6),
                ha="center",
                fontsize=7,
            )
            previous = x
        if group.get("claim") is not None:
            ax.plot(x, group["claim"], "x", color="tab:red", markersize=8, markeredgewidth=2)
    ax.set(xlabel=xlabel, ylabel="test accuracy, official 10k (%)")
    ax.margins(x=0.12, y=0.12)  # room for the labels at the edges
    ax.grid(alpha=0.3)


def plot_accuracy_ranges(
    panels: list[tuple[str, list[dict[str, Any]]]], path: Path, title: str, claims_note: str | None = None
) -> None:
    """One panel per (x label, groups) (``draw_ranges``), side by side, saved as a PNG."""
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.0, 5.5 * len(panels)), 4.8), squeeze=False)
    for ax, (xlabel, groups) in zip(axes[0], panels, strict=True):
        draw_ranges(ax, groups, xlabel)
    handles = [plt.Line2D([], [], color="tab:blue", marker="o", linestyle="", label="mean; bar: min–max of the runs")]
    if claims_note:
        handles.append(
            plt.Line2D([], [], color="tab:red", marker="x", linestyle="", markeredgewidth=2, label=claims_note)
        )
    axes[0][0].legend(handles=handles, fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    render(fig, path)


def plot_per_run(
    points: list[dict[str, Any]], path: Path, xlabel: str, title: str, test_label: str, val_label: str
) -> None:
    """Each run's test accuracy (and validation accuracy, where it has one) at its ``x`` (a seed, or a
    job number: categories in the given order), each series' mean as a dashed line; saved as a PNG.
    ``points``: ``{"x", "test", "val"}``, accuracies in % (``val`` None or NaN where not validated)."""
    fig, ax = plt.subplots(figsize=(max(7.0, 0.45 * len(points) + 4), 4.8))
    xs = list(range(len(points)))
    series = [("test", test_label, "tab:blue", "o"), ("val", val_label, "tab:orange", "s")]
    for key, label, colour, marker in series:
        values = [number(point.get(key)) for point in points]
        shown = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None and not math.isnan(v)]
        if not shown:
            continue
        mean = sum(v for _, v in shown) / len(shown)
        ax.plot(*zip(*shown, strict=True), marker=marker, linestyle="", color=colour, label=label)
        ax.axhline(mean, color=colour, linestyle="--", linewidth=1, label=f"its mean, {mean:.2f} % (n={len(shown)})")
        if key == "test" and len(shown) <= 12:  # each run's figure beside its point, while they stay readable
            for x, v in shown:
                ax.annotate(f"{v:.2f}", (x, v), textcoords="offset points", xytext=(6, 0), va="center", fontsize=7)
    ax.set_xticks(xs, [str(point["x"]) for point in points])
    ax.set(xlabel=xlabel, ylabel="accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.15, y=0.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    render(fig, path)


def plot_frontier(
    frontier: list[dict[str, Any]], others: list[dict[str, Any]], anchors: dict[str, list], path: Path
) -> None:
    """Parameters (log) against test accuracy: the frontier's points (``frontier``: mean with its
    seeds' min–max, joined by a line), the other recipes measured beside them, and ``anchors``
    (``earlier``: this project's earlier recipes; ``public``: published figures), each labelled with
    its conditions. Saved as a PNG."""
    fig, ax = plt.subplots(figsize=(12, 6.5))
    frontier = sorted(frontier, key=lambda point: point["x"])
    ax.plot([p["x"] for p in frontier], [p["mean"] for p in frontier], "-", color="tab:blue", alpha=0.6)
    for points, colour, marker, name in (
        (frontier, "tab:blue", "o", "frontier: five-seed mean, bar min–max"),
        (others, "tab:gray", "s", "other recipes measured here"),
    ):
        for index, point in enumerate(points):
            yerr = [[point["mean"] - point["min"]], [point["max"] - point["mean"]]]
            ax.errorbar(
                point["x"],
                point["mean"],
                yerr=yerr,
                fmt=marker,
                color=colour,
                capsize=4,
                label=name if index == 0 else None,
            )
            ax.annotate(
                point["label"],
                (point["x"], point["max"]),
                textcoords="offset points",
                xytext=(-8, 6),
                ha="right",
                fontsize=7,
                color=colour,
            )
    styles = {
        "earlier": ("tab:green", "D", "this project's earlier recipes"),
        "public": ("tab:red", "x", "public claims"),
    }
    seen: dict[float, int] = {}  # anchors already labelled at each size: the next label goes below them
    for kind, points in anchors.items():
        colour, marker, name = styles[kind]
        for index, point in enumerate(points):
            below = seen[point["params"]] = seen.get(point["params"], -1) + 1
            ax.plot(
                point["params"],
                point["accuracy"],
                marker,
                color=colour,
                markersize=7,
                markeredgewidth=2,
                label=name if index == 0 else None,
            )
            ax.annotate(
                f"{point['name']}: {point['conditions']}",
                (point["params"], point["accuracy"]),
                textcoords="offset points",
                xytext=(6, -10 - 9 * below),
                fontsize=6,
                color=colour,
            )
    ax.set_xscale("log")
    xs = [p["x"] for p in frontier + others] + [p["params"] for points in anchors.values() for p in points]
    ax.set_xlim(min(xs) / 2.5, max(xs) * 5)  # room for the labels, which run to the right of each point
    ax.set(
        xlabel="trainable parameters",
        ylabel="test accuracy, official 10k (%)",
        title="The frontier: the best network found for each parameter budget, five seeds each",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    render(fig, path)
