"""Results: a run's results.json and training-curve plot; across runs, the results table and the
seed statistics (``python -m mnist_budget.report RUN_OR_SWEEP_DIR ...``)."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # runs write plots on machines without a display
import matplotlib.pyplot as plt  # noqa: E402

from mnist_budget.hardware import hardware_label  # noqa: E402


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename: an interrupted run never leaves a half-written file."""
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text)
    staging.replace(path)


def write_results(path: Path, results: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(results, indent=2, sort_keys=False) + "\n")


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


def plot_confusion_matrix(matrix: list[list[int]], path: Path) -> plt.Figure:
    """Counts of (true digit, predicted digit) on the test set; off-diagonal cells are the mistakes."""
    size = len(matrix)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    errors = [[count if row != col else 0 for col, count in enumerate(line)] for row, line in enumerate(matrix)]
    image = ax.imshow(errors, cmap="Reds")
    for row in range(size):
        for col in range(size):
            count = matrix[row][col]
            if count:
                ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                        color="black" if row != col else "tab:blue", fontweight="bold" if row == col else None)
    total = sum(map(sum, matrix))
    wrong = total - sum(matrix[i][i] for i in range(size))
    ax.set(xticks=range(size), yticks=range(size), xlabel="predicted digit", ylabel="true digit",
           title=f"Confusion matrix: {wrong} of {total:,} wrong (colour: mistakes)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def plot_misclassified(images: list[Any], labels: list[int], predicted: list[int], confidence: list[float],
                       path: Path, limit: int = 64) -> plt.Figure:
    """A grid of the test images the model got wrong, most confident mistakes first."""
    order = sorted(range(len(labels)), key=lambda i: -confidence[i])[:limit]
    columns = 8
    rows = max(1, math.ceil(len(order) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, order, strict=False):
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{labels[index]}→{predicted[index]} {100 * confidence[index]:.0f}%", fontsize=8)
    fig.suptitle(f"Misclassified test images (true→predicted, confidence): {len(labels)}"
                 + (f", the {limit} most confident shown" if len(labels) > limit else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def write_test_figures(report: dict[str, Any], output_dir: Path, loggers: list[Any] = (), step: int = 0) -> None:
    """confusion_matrix.png and misclassified.png in the run folder, and the same figures in TensorBoard."""
    mistakes = report["mistakes"]
    figures = {
        "test/confusion_matrix": plot_confusion_matrix(report["confusion_matrix"], output_dir / "confusion_matrix.png"),
        "test/misclassified": plot_misclassified(
            [m["image"].numpy() for m in mistakes], [m["label"] for m in mistakes],
            [m["predicted"] for m in mistakes], [m["confidence"] for m in mistakes], output_dir / "misclassified.png",
        ),
    }  # fmt: skip
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_figure"):
            for tag, figure in figures.items():
                experiment.add_figure(tag, figure, global_step=step, close=False)
    for figure in figures.values():
        plt.close(figure)


def collect_results(paths: list[Path]) -> list[dict[str, Any]]:
    """Every training run's results.json under the given folders (searched recursively), by experiment name."""
    files = sorted({file for path in paths for file in ([path] if path.is_file() else path.rglob("results.json"))})
    results = (json.loads(file.read_text()) for file in files)
    training = [r for r in results if r.get("task", "train") == "train"]  # eval runs write results.json too
    return sorted(training, key=lambda r: (r.get("experiment") or "", r["model"]))


def run_hardware(result: dict[str, Any]) -> str:
    """The hardware a run trained on, as recorded in its results.json (older runs: unknown)."""
    return hardware_label(result["hardware"]) if result.get("hardware") else "unknown hardware"


def markdown_table(columns: list[tuple[str, str]], rows: list[list[str]]) -> str:
    """``columns``: (heading, alignment) pairs, alignment ``l`` or ``r``; ``rows``: formatted cells."""
    lines = [
        "| " + " | ".join(heading for heading, _ in columns) + " |",
        "| " + " | ".join("---:" if align == "r" else "---" for _, align in columns) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def results_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per run: what it is, what it cost, what it reached, what was claimed."""
    columns = [
        ("experiment", "l"), ("model", "l"), ("params", "r"), ("seed", "r"), ("precision", "l"), ("epochs", "r"),
        ("best val acc", "r"), ("test acc (official 10k)", "r"), ("train s", "r"), ("s/epoch", "r"), ("claim", "l"),
    ]  # fmt: skip
    rows = [
        [
            r.get("experiment") or r["model"], r["model"], f"{r['params']:,}", str(r.get("seed", "")),
            r.get("precision", ""), str(r["epochs"]), f"{100 * r['best_val_acc']:.2f} %",
            f"**{100 * r['test_acc']:.2f} %**", f"{r['train_seconds']:.0f}",
            f"{r['train_seconds'] / max(1, r['epochs']):.1f}", r.get("claim") or "",
        ]  # fmt: skip
        for r in results
    ]
    return markdown_table(columns, rows)


def config_key(result: dict[str, Any]) -> tuple[str, ...]:
    """What makes runs "the same config": experiment, overrides other than the seed, hardware, precision.

    Runs that share it and differ only in ``seed`` are one row of the seed statistics.
    """
    overrides = sorted(o for o in result.get("overrides", []) if not o.lstrip("+~").startswith(("seed=", "hydra.")))
    return (
        result.get("experiment") or result["model"],
        " ".join(overrides),
        run_hardware(result),
        str(result.get("precision", "")),
    )


def seed_statistics(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per config: test accuracy of every seed, mean, sample standard deviation, minimum, and the
    median training seconds. Accuracies are fractions, as in results.json."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(config_key(result), []).append(result)
    rows = []
    for (experiment, overrides, hardware, precision), runs in groups.items():
        runs = sorted(runs, key=lambda r: r.get("seed", 0))
        accs = [r["test_acc"] for r in runs]
        rows.append(
            {
                "experiment": experiment,
                "overrides": overrides,
                "hardware": hardware,
                "precision": precision,
                "params": runs[0]["params"],
                "epochs": statistics.median(r["epochs"] for r in runs),
                "seeds": [r.get("seed") for r in runs],
                "test_accs": accs,
                "mean": statistics.fmean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "min": min(accs),
                "median_train_seconds": statistics.median(r["train_seconds"] for r in runs),
            }
        )
    return rows


def seed_table(rows: list[dict[str, Any]]) -> str:
    """The seed statistics as a Markdown table (accuracies in %)."""
    columns = [
        ("experiment", "l"), ("overrides", "l"), ("hardware", "l"), ("precision", "l"), ("params", "r"),
        ("epochs", "r"), ("seeds", "l"), ("test acc per seed", "l"), ("mean", "r"), ("std", "r"), ("min", "r"),
        ("median train s", "r"),
    ]  # fmt: skip
    cells = [
        [
            row["experiment"], row["overrides"] or "-", row["hardware"], row["precision"], f"{row['params']:,}",
            f"{row['epochs']:g}", ", ".join(map(str, row["seeds"])),
            ", ".join(f"{100 * acc:.2f}" for acc in row["test_accs"]), f"**{100 * row['mean']:.2f} %**",
            f"{100 * row['std']:.2f}", f"{100 * row['min']:.2f} %", f"{row['median_train_seconds']:.1f}",
        ]  # fmt: skip
        for row in rows
    ]
    return markdown_table(columns, cells)


FAILURE_FILE = "failure.json"  # written instead of results.json by a sweep job that failed


def sweep_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder of a sweep: its results, or its failure (status and error line)."""
    jobs = []
    for job_dir in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name)):
        for name, status in (("results.json", "ok"), (FAILURE_FILE, "failed")):
            if (job_dir / name).is_file():
                row = json.loads((job_dir / name).read_text())
                jobs.append({"job": job_dir.name, "status": status, **row})
                break
    return jobs


def varying_overrides(jobs: list[dict[str, Any]]) -> list[str]:
    """The override keys whose values differ between jobs (the sweep's axes)."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job.get("overrides", []):
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    seen_in_all = {key for key in values if all(any(o.startswith(f"{key}=") for o in j.get("overrides", [])) for j in jobs)}
    return sorted(key for key, vals in values.items() if len(vals) > 1 or key not in seen_in_all)


def final_val_acc(history: list[dict[str, Any]]) -> float:
    """The final weights' validation accuracy: the last validated epoch of a run's history."""
    validated = [row for row in history if "val/acc" in row]
    return validated[-1]["val/acc"] if validated else float("nan")


def short_value(value: str) -> str:
    """An override value as a reader wants it: Optuna's 0.30752727452766 becomes 0.3075."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() or len(value) <= 6 else f"{number:.4g}"


def sweep_summary(sweep_dir: Path) -> tuple[list[str], list[list[str]]]:
    """The summary's header and rows; the best job by the sweep's validation metric is marked (not
    the best test accuracy: choosing on the test set would make its figure optimistic)."""
    jobs = sweep_jobs(sweep_dir)
    axes = varying_overrides(jobs)
    finished = [j for j in jobs if j["status"] == "ok"]
    for job in finished:
        job["final_val_acc"] = final_val_acc(job.get("history", []))
    # conf/config.yaml's optimized_metric: val/acc ranks the final weights, val/acc_best the best epoch
    final = bool(finished) and finished[0].get("optimized_metric") == "val/acc"
    best = max(finished, key=lambda j: j["final_val_acc" if final else "best_val_acc"], default=None)
    header = ["job", *axes, "params", "epochs", "best val acc", "final val acc", "test acc", "seconds", "status"]
    rows = []
    for job in jobs:
        settings = dict(o.partition("=")[::2] for o in job.get("overrides", []))
        cells = [job["job"] + (" (best)" if job is best else ""), *(short_value(settings.get(axis, "")) for axis in axes)]
        if job["status"] == "ok":
            cells += [f"{job['params']:,}", str(job["epochs"]), f"{100 * job['best_val_acc']:.2f} %",
                      f"{100 * job['final_val_acc']:.2f} %", f"{100 * job['test_acc']:.2f} %", f"{job['train_seconds']:.1f}", "ok"]  # fmt: skip
        else:
            cells += ["", "", "", "", "", "", f"failed: {job.get('error', '')}"]
        rows.append(cells)
    return header, rows


def write_sweep_summary(sweep_dir: Path) -> None:
    """summary.csv and summary.md in the sweep folder, rewritten (atomically) as each job ends."""
    header, rows = sweep_summary(sweep_dir)
    text = io.StringIO()
    csv.writer(text).writerows([header, *rows])
    write_atomically(sweep_dir / "summary.csv", text.getvalue())
    failed = sum(row[-1].startswith("failed") for row in rows)
    markdown = (f"# Sweep {sweep_dir}\n\n{len(rows)} jobs, {failed} failed; (best): highest validation accuracy "
                f"by the sweep's optimized_metric (best epoch, or final weights for val/acc). "
                f"`tensorboard --logdir {sweep_dir}` compares them in the HParams tab.\n\n")
    markdown += markdown_table([(h, "l") for h in header], rows)
    write_atomically(sweep_dir / "summary.md", markdown)


def main(argv: list[str] | None = None) -> None:
    """``python -m mnist_budget.report RUN_OR_SWEEP_DIR ... [--output report.md]``: tabulate runs'
    results.json, one row per run, then the seed statistics of every config run with several seeds."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run or sweep directories, or results.json files")
    parser.add_argument("--output", type=Path, help="write the tables here as well as to stdout")
    args = parser.parse_args(argv)
    results = collect_results(args.runs)
    if not results:
        parser.error(f"no results.json under {', '.join(map(str, args.runs))}: point at run directories")
    report = results_table(results)
    stats = [row for row in seed_statistics(results) if len(row["seeds"]) > 1]
    if stats:
        report += "\nSeed statistics (official 10k test set; std is the sample standard deviation):\n\n"
        report += seed_table(stats)
    print(report, end="")
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
