"""Command line: ``python run.py [task=train|eval|predict|export|serve] [group=option ...] [key=value ...]``; ``-m`` sweeps.

``task=<name>`` picks conf/task/<name>.yaml, which names the function that runs it. What every
task shares (checking the command before anything is written, running it under Hydra, one-line
refusals, signals, sweeps and SLURM) lives in src/mnist_budget/tasks/runner.py.
"""

from pathlib import Path

from mnist_budget.tasks.runner import main

if __name__ == "__main__":
    main(Path(__file__).resolve().parent / "conf")
