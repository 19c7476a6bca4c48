"""How fast the command line answers: ``--help``, ``--cfg job``, a refusal, missing MNIST.

    uv run python benchmarks/cli_latency.py [--runs 5] [--smoke]

Each command runs ``--runs`` times as a user runs it (``python run.py ...`` in a fresh process);
the script prints the median and range of the wall time, the exit code, and whether the command
left a run folder behind. "missing MNIST" points ``MNIST_BUDGET_DATA`` at an empty folder, as a
newcomer without the files (and, on this machine, without internet) would. The figures and their
targets are in docs/performance.md ("Command-line latency").
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, argument_parser, data_dir

COMMANDS = {
    "--help": ["--help"],
    "--cfg job": ["--cfg", "job"],
    "refusal (model=nope)": ["model=nope"],
    "refusal (optim.lr=-1)": ["optim.lr=-1"],
    "missing MNIST": [],
}


def time_command(args: list[str], data_folder: Path, run_dir: Path) -> tuple[float, int]:
    """Seconds and exit code of one ``python run.py`` in a fresh process."""
    env = {**os.environ, "MNIST_BUDGET_DATA": str(data_folder)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argument_parser(__doc__, overrides=False)
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (the median is reported)")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    real_data = data_dir()
    print(f"python run.py, {runs} run(s) each, {os.cpu_count()} cores; wall seconds from start to exit")
    with tempfile.TemporaryDirectory() as scratch:
        empty = Path(scratch) / "no-data"
        empty.mkdir()
        for name, command in COMMANDS.items():
            data_folder = empty if name == "missing MNIST" else Path(real_data)
            seconds, codes, folders = [], set(), 0
            for run in range(runs):
                run_dir = Path(scratch) / f"run-{len(name)}-{run}"
                elapsed, code = time_command(command, data_folder, run_dir)
                seconds.append(elapsed)
                codes.add(code)
                folders += run_dir.exists()
            print(
                f"{name:24s} median {statistics.median(seconds):5.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f}); "
                f"exit {'/'.join(map(str, sorted(codes)))}; run folder left: {folders} of {runs}",
                flush=True,
            )


if __name__ == "__main__":
    main()
