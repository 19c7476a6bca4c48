"""``python -m mnist_budget.reporting RUN_OR_SWEEP_DIR ...``: the results table and seed statistics
of finished runs (the tables themselves: mnist_budget.reporting.tables)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_budget.reporting.tables import (
    collect_results,
    frontier_plot,
    plot_records,
    results_table,
    seed_statistics,
    seed_table,
)


def main(argv: list[str] | None = None) -> None:
    """``python -m mnist_budget.reporting RUN_OR_SWEEP_DIR ... [--output report.md] [--plot plot.png]``:
    tabulate runs' results.json, one row per run, then the seed statistics of every config run with
    several seeds; ``--plot``: parameters against test accuracy, claims marked."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run or sweep directories, or results.json files")
    parser.add_argument("--output", type=Path, help="write the tables here as well as to stdout")
    parser.add_argument(
        "--plot", type=Path, help="also draw parameters against test accuracy (mean, min–max over seeds) as this PNG"
    )
    parser.add_argument(
        "--frontier",
        type=Path,
        help="also draw the frontier (record_* recipes joined, others beside, public and earlier figures marked) as this PNG",
    )
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
    if args.plot:
        plot_records(results, args.plot)
        print(f"plot: {args.plot}")
    if args.frontier:
        frontier_plot(results, args.frontier)
        print(f"frontier: {args.frontier}")
