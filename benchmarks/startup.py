"""Where a run's wall time goes outside training: each phase from the command to the first training
step, and from the last step to the exit.

    uv run python benchmarks/startup.py [--runs 3] [--smoke] [OVERRIDE ...]

Runs ``python run.py`` as a user does, in a fresh process, with one extra callback (``Timeline``
in benchmarks/timeline.py, found through PYTHONPATH) that notes the clock at the trainer's hooks; the run folder's
first log line marks when the task began. Prints the median of each phase over ``--runs`` runs.
The figures and what causes each are in docs/performance.md ("Command-line latency and start-up").
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import ROOT, argument_parser, data_dir

PHASES = (
    ("command -> task starts (interpreter, preflight, Hydra, imports)", "start", "task"),
    ("task starts -> fit starts (model, trainer, data loaded)", "task", "fit_start"),
    ("fit starts -> first training step (sanity check, loaders)", "fit_start", "first_step"),
    ("training steps", "first_step", "last_step"),
    ("last step -> test done (validation, test)", "last_step", "test_end"),
    ("test done -> exit (figures, results, loggers, interpreter exit)", "test_end", "exit"),
)


def first_log_time(run_log: Path) -> float:
    """The time of the run log's first line (Hydra's file format: ``[YYYY-mm-dd HH:MM:SS,mmm][...``)."""
    stamp = run_log.read_text().splitlines()[0][1:24]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def one_run(overrides: list[str], scratch: Path, n: int) -> dict[str, float]:
    """The clock at each mark of one ``python run.py`` (seconds since the epoch)."""
    run_dir, notes = scratch / f"run-{n}", scratch / f"timeline-{n}.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH")])),
        "MNIST_BUDGET_DATA": data_dir(),
    }
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        f"hydra.run.dir={run_dir}",
        "+callbacks.timeline._target_=timeline.Timeline",
        f"+callbacks.timeline.path={notes}",
        *overrides,
    ]
    start = time.time()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    marks = {"start": start, "exit": time.time(), "task": first_log_time(run_dir / "run.log")}
    return {**marks, **json.loads(notes.read_text())}


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of the command (the median of each phase is reported)"
    )
    args = parser.parse_args()
    overrides = list(args.overrides)
    runs = args.runs
    if args.smoke:
        overrides = [
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_test_batches=1",
            *overrides,
        ]
        runs = 1
    print(f"python run.py {' '.join(overrides)}: {runs} run(s), median seconds per phase")
    with tempfile.TemporaryDirectory() as scratch:
        timelines = [one_run(overrides, Path(scratch), n) for n in range(runs)]
    for name, begin, end in PHASES:
        seconds = [t[end] - t[begin] for t in timelines]
        print(f"{name:70s} {statistics.median(seconds):6.2f} s")
    total = statistics.median(t["exit"] - t["start"] for t in timelines)
    print(f"{'whole command':70s} {total:6.2f} s")


if __name__ == "__main__":
    main()
