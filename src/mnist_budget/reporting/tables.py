"""Tables across runs: one row per run, the seed statistics of each config, and a sweep's summary."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mnist_budget.files import write_atomically
from mnist_budget.reporting.plots import number, plot_accuracy_ranges, plot_frontier, plot_per_run
from mnist_budget.reporting.results import FAILURE_FILE, final_val_acc


def collect_results(paths: list[Path]) -> list[dict[str, Any]]:
    """Every tested training run's results.json under the given folders (searched recursively), by experiment name."""
    files = sorted({file for path in paths for file in ([path] if path.is_file() else path.rglob("results.json"))})
    results = (json.loads(file.read_text()) for file in files)
    # eval runs write results.json too; a search's trials were never tested (test_after_training=false)
    training = [r for r in results if r.get("task", "train") == "train" and "test_acc" in r]
    return sorted(training, key=lambda r: (r.get("experiment") or "", r["model"]))


def hardware_label(facts: dict[str, Any]) -> str:
    """A short name of the hardware kind a run recorded (mnist_budget.hardware.describe), for
    grouping results: the GPU, or the CPU and its ISA."""
    if "gpu" in facts:
        return facts["gpu"]
    return f"{facts['cpu']} ({facts['cpu_capability']}{', native bf16' if facts['cpu_native_bf16'] else ''})"


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


def scoring(result: dict[str, Any]) -> str:
    """How a run's test figure was scored: "TTA" (each image's mean over its 1-pixel shifts,
    results.json's ``eval_tta``) or "once" (also every run from before the key existed)."""
    return "TTA" if result.get("eval_tta") else "once"


def results_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per run: what it is, what it cost, what it reached, what was claimed."""
    columns = [
        ("experiment", "l"),
        ("model", "l"),
        ("params", "r"),
        ("seed", "r"),
        ("precision", "l"),
        ("epochs", "r"),
        ("best val acc", "r"),
        ("scored", "l"),
        ("test acc (official 10k)", "r"),
        ("train s", "r"),
        ("s/epoch", "r"),
        ("claim", "l"),
    ]
    rows = [
        [
            r.get("experiment") or r["model"],
            r["model"],
            f"{r['params']:,}",
            str(r.get("seed", "")),
            r.get("precision", ""),
            str(r["epochs"]),
            f"{100 * r['best_val_acc']:.2f} %",
            scoring(r),
            f"**{100 * r['test_acc']:.2f} %**",
            f"{r['train_seconds']:.0f}",
            f"{r['train_seconds'] / max(1, r['epochs']):.1f}",
            r.get("claim") or "",
        ]
        for r in results
    ]
    return markdown_table(columns, rows)


def config_key(result: dict[str, Any]) -> tuple[str, ...]:
    """What makes runs "the same config": experiment, overrides other than the seed, hardware,
    precision, scoring (with TTA or once).

    Runs that share it and differ only in ``seed`` are one row of the seed statistics.
    """
    overrides = sorted(o for o in result.get("overrides", []) if not o.lstrip("+~").startswith(("seed=", "hydra.")))
    return (
        result.get("experiment") or result["model"],
        " ".join(overrides),
        run_hardware(result),
        str(result.get("precision", "")),
        scoring(result),
    )


def seed_statistics(
    results: list[dict[str, Any]], key: Callable[[dict[str, Any]], tuple[str, ...]] = config_key
) -> list[dict[str, Any]]:
    """Per config (``key``: what makes runs the same config): test accuracy of every seed, mean, sample
    standard deviation, minimum, and the median training seconds. Accuracies are fractions, as in results.json."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(key(result), []).append(result)
    rows = []
    for (experiment, overrides, hardware, precision, scored), runs in groups.items():
        runs = sorted(runs, key=lambda r: r.get("seed", 0))
        accs = [r["test_acc"] for r in runs]
        rows.append(
            {
                "experiment": experiment,
                "overrides": overrides,
                "hardware": hardware,
                "precision": precision,
                "scored": scored,
                "params": runs[0]["params"],
                "epochs": statistics.median(r["epochs"] for r in runs),
                "seeds": [r.get("seed") for r in runs],
                "test_accs": accs,
                "mean": statistics.fmean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "min": min(accs),
                "max": max(accs),
                "claim": runs[0].get("claim"),
                "median_train_seconds": statistics.median(r["train_seconds"] for r in runs),
            }
        )
    return rows


def seed_table(rows: list[dict[str, Any]]) -> str:
    """The seed statistics as a Markdown table (accuracies in %)."""
    columns = [
        ("experiment", "l"),
        ("overrides", "l"),
        ("hardware", "l"),
        ("precision", "l"),
        ("scored", "l"),
        ("params", "r"),
        ("epochs", "r"),
        ("seeds", "l"),
        ("test acc per seed", "l"),
        ("mean", "r"),
        ("std", "r"),
        ("min", "r"),
        ("median train s", "r"),
    ]
    cells = [
        [
            row["experiment"],
            row["overrides"] or "-",
            row["hardware"],
            row["precision"],
            row["scored"],
            f"{row['params']:,}",
            f"{row['epochs']:g}",
            ", ".join(map(str, row["seeds"])),
            ", ".join(f"{100 * acc:.2f}" for acc in row["test_accs"]),
            f"**{100 * row['mean']:.2f} %**",
            f"{100 * row['std']:.2f}",
            f"{100 * row['min']:.2f} %",
            f"{row['median_train_seconds']:.1f}",
        ]
        for row in rows
    ]
    return markdown_table(columns, cells)


def sweep_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder of a sweep: its results, or its failure (status and error line)."""
    jobs = []
    for job_dir in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name)):
        for name, status in (("results.json", "ok"), (FAILURE_FILE, "failed")):
            if (job_dir / name).is_file():
                row = json.loads((job_dir / name).read_text())
                jobs.append({"job": job_dir.name, "status": status, **row})  # failure.json: failed or interrupted
                break
    return jobs


def varying_overrides(jobs: list[dict[str, Any]]) -> list[str]:
    """The override keys whose values differ between jobs (the sweep's axes)."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job.get("overrides", []):
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    seen_in_all = {
        key for key in values if all(any(o.startswith(f"{key}=") for o in j.get("overrides", [])) for j in jobs)
    }
    return sorted(key for key, vals in values.items() if len(vals) > 1 or key not in seen_in_all)


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
    tested = any("test_acc" in job for job in finished)  # a search's trials are not: no column to choose on
    header = [
        "job",
        *axes,
        "params",
        "epochs",
        "best val acc",
        "final val acc",
        *(["test acc"] if tested else []),
        "seconds",
        "status",
    ]
    rows = []
    for job in jobs:
        settings = dict(o.partition("=")[::2] for o in job.get("overrides", []))
        cells = [
            job["job"] + (" (best)" if job is best else ""),
            *(short_value(settings.get(axis, "")) for axis in axes),
        ]
        if job["status"] == "ok":
            cells += [
                f"{job['params']:,}",
                str(job["epochs"]),
                f"{100 * job['best_val_acc']:.2f} %",
                f"{100 * job['final_val_acc']:.2f} %",
                *([f"{100 * job['test_acc']:.2f} %" if "test_acc" in job else ""] if tested else []),
                f"{job['train_seconds']:.1f}",
                "ok",
            ]
        else:
            cells += [""] * (len(header) - len(cells) - 1) + [f"{job['status']}: {job.get('error', '')}"]
        rows.append(cells)
    return header, rows


def write_sweep_summary(sweep_dir: Path) -> None:
    """summary.csv and summary.md in the sweep folder, rewritten (atomically) as each job ends."""
    header, rows = sweep_summary(sweep_dir)
    text = io.StringIO()
    csv.writer(text).writerows([header, *rows])
    write_atomically(sweep_dir / "summary.csv", text.getvalue())
    statuses = ("failed", "interrupted", "pruned", "over budget")
    counts = {status: sum(row[-1].startswith(status) for row in rows) for status in statuses}
    ended = ", ".join(f"{count} {status}" for status, count in counts.items() if count or status in statuses[:2])
    markdown = (
        f"# Sweep {sweep_dir}\n\n{len(rows)} jobs, {ended}; (best): highest validation accuracy "
        f"by the sweep's optimized_metric (best epoch, or final weights for val/acc). "
        f"`tensorboard --logdir {sweep_dir}` compares them in the HParams tab.\n\n"
    )
    markdown += markdown_table([(h, "l") for h in header], rows)
    write_atomically(sweep_dir / "summary.md", markdown)
    write_sweep_plot(sweep_dir)


def claimed_accuracy(claim: str | None) -> float | None:
    """The first percentage a published claim states (``"99.54 % best, ..."`` -> 99.54), or None."""
    found = re.search(r"(\d+(?:\.\d+)?)\s*%", claim or "")
    return float(found.group(1)) if found else None


def across_hardware(result: dict[str, Any]) -> tuple[str, ...]:
    """``config_key`` without the hardware and precision: a recipe's seeds wherever they ran."""
    experiment, overrides, _, _, scored = config_key(result)
    return experiment, overrides, "", "", scored


def plot_records(results: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Parameters against test accuracy (mean, min–max over the seeds) of each recipe, its claim marked;
    returns the points drawn (accuracies in %)."""
    groups = [
        {
            "label": f"{row['experiment']} ({len(row['seeds'])} seeds)",
            "x": row["params"],
            "mean": 100 * row["mean"],
            "min": 100 * row["min"],
            "max": 100 * row["max"],
            "claim": claimed_accuracy(row["claim"]),
        }
        for row in seed_statistics(results, key=across_hardware)
    ]
    plot_accuracy_ranges(
        [("parameters", groups)],
        path,
        "Records and references: test accuracy over seeds against parameters",
        "published claim or target (the first figure it states)",
    )
    return groups


ANCHORS = Path(__file__).with_name("frontier_anchors.yaml")  # shipped in the package, beside this module


def frontier_plot(results: list[dict[str, Any]], path: Path, anchors: Path = ANCHORS) -> list[dict[str, Any]]:
    """docs/frontier.md's plot: the record recipes' five-seed figures as the frontier (runs tagged
    ``record``), every other recipe among ``results`` beside it, and the anchors of ``anchors``.
    Returns the frontier's points (accuracies in %)."""
    points = []
    for row in seed_statistics(results, key=across_hardware):
        point = {
            "x": row["params"],
            "mean": 100 * row["mean"],
            "min": 100 * row["min"],
            "max": 100 * row["max"],
            "label": f"{row['experiment']}: {100 * row['mean']:.2f} %",
            "record": str(row["experiment"]).startswith("record_"),
        }
        points.append(point)
    marks = yaml.safe_load(anchors.read_text())
    measured = {p["label"].split(":")[0] for p in points if p["record"]}
    earlier = [  # a record not among the runs given: its row as measured before, with its conditions
        {**row, "x": row["params"], "label": f"{row['name']}: {row['mean']:.2f} % ({row['conditions']})"}
        for row in marks.pop("frontier", [])
        if row["name"] not in measured
    ]
    frontier = [p for p in points if p["record"]] + earlier
    plot_frontier(frontier, [p for p in points if not p["record"]], marks, path)
    return frontier


def write_sweep_plot(sweep_dir: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """summary.png: test accuracy (mean, min–max over the jobs) against each swept key but the seed;
    where the seed is the only swept key (or nothing is swept), each job's test and validation
    accuracy by seed (or job) with their means (``seed_plot``). Returns the panels drawn (none
    before a job has finished)."""
    finished = [job for job in sweep_jobs(sweep_dir) if job["status"] == "ok"]
    if not finished:
        return []
    if not all("test_acc" in job for job in finished):  # a search's trials: validation is what they are chosen on
        return validation_plot(sweep_dir, finished)
    swept = varying_overrides(finished)
    axes = [axis for axis in swept if axis.lstrip("+~") != "seed"]
    if not axes:
        return [seed_plot(sweep_dir, finished, by_seed=bool(swept))]
    panels = []
    for axis in axes:
        by_value: dict[str, list[float]] = {}
        for job in finished:
            value = dict(o.partition("=")[::2] for o in job.get("overrides", [])).get(axis, "")
            by_value.setdefault(short_value(value), []).append(100 * job["test_acc"])
        order = sorted(by_value, key=float) if all(number(v) is not None for v in by_value) else list(by_value)
        groups = [
            {"x": value, "mean": statistics.fmean(accs), "min": min(accs), "max": max(accs), "label": f"n={len(accs)}"}
            for value, accs in ((value, by_value[value]) for value in order)
        ]
        panels.append((axis, groups))
    plot_accuracy_ranges(panels, sweep_dir / "summary.png", f"Sweep {sweep_dir.name}: test accuracy by swept key")
    return panels


def validation_plot(sweep_dir: Path, finished: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """summary.png of untested jobs (a search's trials): each job's validation accuracy, the one the
    summary ranks by, against its parameter count."""
    final = finished[0].get("optimized_metric") == "val/acc"
    groups = []
    for job in sorted(finished, key=lambda j: j["params"]):
        value = 100 * (final_val_acc(job.get("history", [])) if final else job["best_val_acc"])
        groups.append({"x": f"{job['params']:,}", "mean": value, "min": value, "max": value, "label": job["job"]})
    panels = [("parameters", groups)]
    plot_accuracy_ranges(panels, sweep_dir / "summary.png", f"{sweep_dir.name}: validation accuracy by network size")
    return panels


def job_seed(job: dict[str, Any]) -> str:
    """The seed a job ran with: its results.json's, else its override's."""
    if job.get("seed") is not None:
        return str(job["seed"])
    overrides = dict(o.lstrip("+~").partition("=")[::2] for o in job.get("overrides", []))
    return overrides.get("seed", "")


def seed_plot(sweep_dir: Path, finished: list[dict[str, Any]], by_seed: bool) -> tuple[str, list[dict[str, Any]]]:
    """summary.png of a sweep over seeds only (``by_seed``; else over nothing: by job): each job's test
    accuracy and the validation accuracy the summary ranks by (``sweep_summary``), with each one's
    mean line. Returns the panel: its x label and one point per job (accuracies in %)."""
    final = finished[0].get("optimized_metric") == "val/acc"

    def val_acc(job: dict[str, Any]) -> float:
        value = number(final_val_acc(job.get("history", [])) if final else job.get("best_val_acc"))
        return math.nan if value is None else 100 * value

    points = [
        {
            "x": job_seed(job) if by_seed else job["job"],
            "test": 100 * job.get("test_acc", math.nan),
            "val": val_acc(job),
        }
        for job in finished
    ]
    if by_seed and all(number(point["x"]) is not None for point in points):
        points.sort(key=lambda point: float(point["x"]))
    xlabel = "seed" if by_seed else "job"
    scored = "with TTA" if scoring(finished[0]) == "TTA" else "each image once"
    plot_per_run(
        points,
        sweep_dir / "summary.png",
        xlabel,
        f"Sweep {sweep_dir.name}: accuracy per {xlabel}" + (" (the only swept key)" if by_seed else " (no key swept)"),
        f"test, official 10k ({scored})",
        f"validation ({'final weights' if final else 'best epoch'})",
    )
    return xlabel, points
