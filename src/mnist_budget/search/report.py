"""What a search shows when it ends: the sweep summary (trials complete, pruned, failed,
interrupted; mnist_budget.reporting.tables), Optuna's own plots in the search folder, and the best
trial's values as a command line."""

from __future__ import annotations

import logging
import shlex
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
from optuna.trial import TrialState
from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

from mnist_budget.reporting.tables import write_sweep_summary
from mnist_budget.search.budget import is_over_budget
from mnist_budget.search.identity import Recipe, plain_command_line
from mnist_budget.search.study import PRUNED_AT, counts_toward_total, recipe

log = logging.getLogger(__name__)
UNCOUNTED = ("interrupted", "over budget")  # trials that n_trials does not count (study.counts_toward_total)
PLOTS = {"optimization_history.png": plot_optimization_history, "param_importances.png": plot_param_importances}


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by how they ended (interrupted trials, which are retried, apart from failed ones; a
    network over the budget apart from pruned ones)."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        if is_over_budget(trial):
            name = "over budget"
        else:
            name = trial.state.name.lower() if counts_toward_total(trial) else "interrupted"
        counts[name] = counts.get(name, 0) + 1
    return counts


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances, as PNG files (once two trials are complete)."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return []
    written = []
    for name, plot in PLOTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = plot(study)
        axes.figure.savefig(folder / name, dpi=100, bbox_inches="tight")
        plt.close(axes.figure)
        written.append(folder / name)
    return written


def best_command(study: optuna.Study, arguments: list[str]) -> str | None:
    """The command that trains the best trial alone: the overrides its results.json records (the
    command line's, the search config's own settings, the trial's values: identity.Recipe)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    saved = recipe(study) or Recipe(plain_command_line(arguments), [], [])
    return shlex.join(["python", "run.py", *saved.overrides(study.best_trial.params)])


def report(study: optuna.Study, folder: Path, arguments: list[str], n_trials: int) -> list[str]:
    """Rewrite the summary and the plots; the lines a finished (or stopped) search prints."""
    write_sweep_summary(folder)
    plots = write_plots(study, folder)
    counts = state_counts(study)
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if PRUNED_AT in t.user_attrs]
    lines = [
        f"study {study.study_name!r}: {sum(v for k, v in counts.items() if k not in UNCOUNTED)} of {n_trials} trials ("
        + ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
        + f"); summary: {folder / 'summary.md'}"
    ]
    if pruned:
        lines.append("pruned after epoch: " + ", ".join(f"trial {t.number}: {t.user_attrs[PRUNED_AT]}" for t in pruned))
    command = best_command(study, arguments)
    if command:
        best = study.best_trial
        lines.append(f"best: trial {best.number}, value {best.value:.4f}; train it alone with: {command}")
    if plots:
        lines.append("plots: " + ", ".join(str(p) for p in plots))
    return lines
