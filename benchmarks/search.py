"""What the search's pruning and its workers are worth, measured with real searches through run.py.

    uv run python benchmarks/search.py pruners [--trials 24] [--pruners none,median,halving,hyperband] [--seeds 1,2,3,4,5]
    uv run python benchmarks/search.py workers [--trials 6] [--workers 1,2]
    ... --smoke    (a few batches per trial: every step runs, the figures mean nothing)

``pruners``: the same search (conf/hparams_search/optuna.yaml's space over the default recipe, the
same sampler seed, the same number of trials) without pruning and with each pruner; for each, the
CPU seconds the search used (this process's children, user + system), its wall time, the trials
pruned, the best validation accuracy and that trial's values; then the best values re-trained with
the default recipe on seeds ``--seeds`` and tested on the official test set (mean, min).
``workers``: the same search with 1 and 2 workers (the joblib launcher) on this machine: trials per
hour. The figures and their hardware are in docs/search.md.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from common import ROOT, argument_parser, data_dir, device_note

PRUNERS = {
    "none": None,
    "median": "{_target_: optuna.pruners.MedianPruner, n_startup_trials: 4, n_warmup_steps: 1}",
    "median_epoch1": "{_target_: optuna.pruners.MedianPruner, n_startup_trials: 4, n_warmup_steps: 0}",
    "halving": "{_target_: optuna.pruners.SuccessiveHalvingPruner, min_resource: 1, reduction_factor: 2}",
    "hyperband": "{_target_: optuna.pruners.HyperbandPruner, min_resource: 1, max_resource: 4, reduction_factor: 2}",
}
SMOKE = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"error: python run.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def search(folder: Path, trials: int, pruner: str | None, extra: list[str]) -> dict:
    """One search in its own folder; its cost, and its study's outcome."""
    args = ["-m", "hparams_search=optuna", f"hydra.sweep.dir={folder}", f"hydra.sweeper.n_trials={trials}", *extra]
    args += ["~hydra.sweeper.pruner"] + ([f"+hydra.sweeper.pruner={pruner}"] if pruner else [])
    cpu, wall = children_cpu_seconds(), time.perf_counter()
    run(args)
    cpu, wall = children_cpu_seconds() - cpu, time.perf_counter() - wall
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.journal")))
    study = optuna.load_study(study_name="mnist_budget", storage=storage)
    states = [t.state.name for t in study.get_trials()]
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "trials": len(states),
        "pruned": states.count("PRUNED"),
        "best_val": study.best_value,
        "best_params": study.best_params,
    }


def retrain(folder: Path, params: dict, seeds: str, extra: list[str]) -> list[float]:
    """The best values with the default recipe, one run per seed: official test accuracy each."""
    overrides = [f"{key}={value}" for key, value in params.items()]
    run(["-m", f"seed={seeds}", f"hydra.sweep.dir={folder}", *overrides, *extra])
    return [
        json.loads((job / "results.json").read_text())["test_acc"]
        for job in sorted(folder.glob("[0-9]*"), key=lambda p: int(p.name))
    ]


def compare_pruners(names: list[str], trials: int, seeds: str, extra: list[str], scratch: Path) -> None:
    print(
        "| pruner | trials (pruned) | CPU s | wall s | best val acc | best trial's values | test acc, seeds "
        f"{seeds} | mean | min |\n| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |"
    )
    for name in names:
        found = search(scratch / f"search-{name}", trials, PRUNERS[name], extra)
        tests = retrain(scratch / f"retrain-{name}", found["best_params"], seeds, extra) if seeds else []
        values = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in found["best_params"].items()
        )
        accs = ", ".join(f"{100 * a:.2f}" for a in tests)
        mean = f"{100 * statistics.fmean(tests):.2f} %" if tests else "-"
        low = f"{100 * min(tests):.2f} %" if tests else "-"
        print(
            f"| {name} | {found['trials']} ({found['pruned']}) | {found['cpu_s']:.0f} | {found['wall_s']:.0f} | "
            f"{100 * found['best_val']:.2f} % | {values} | {accs} | {mean} | {low} |",
            flush=True,
        )


def compare_workers(counts: list[int], trials: int, extra: list[str], scratch: Path) -> None:
    print("| workers | trials | wall s | trials per hour |\n| ---: | ---: | ---: | ---: |")
    for workers in counts:
        launcher = ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={workers}"] if workers > 1 else []
        found = search(
            scratch / f"workers-{workers}",
            trials,
            PRUNERS["none"],
            [*launcher, f"hydra.sweeper.n_jobs={workers}", *extra],
        )
        print(
            f"| {workers} | {found['trials']} | {found['wall_s']:.0f} | {3600 * found['trials'] / found['wall_s']:.0f} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, overrides=False)
    parser.add_argument("what", choices=("pruners", "workers"))
    parser.add_argument("--trials", type=int, default=None, help="trials per search (pruners: 24, workers: 6)")
    parser.add_argument("--pruners", default="none,median,halving,hyperband")
    parser.add_argument("--seeds", default="1,2,3,4,5", help="re-train the best values on these seeds ('' skips it)")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args(argv)
    extra = [f"paths.data_dir={data_dir()}", *(SMOKE if args.smoke else ())]
    print(device_note())
    with tempfile.TemporaryDirectory(prefix="search-benchmark-") as scratch:
        if args.what == "pruners":
            trials = args.trials or (2 if args.smoke else 24)
            compare_pruners(args.pruners.split(","), trials, "1" if args.smoke else args.seeds, extra, Path(scratch))
        else:
            compare_workers(
                [int(n) for n in args.workers.split(",")], args.trials or (2 if args.smoke else 6), extra, Path(scratch)
            )


if __name__ == "__main__":
    main()
