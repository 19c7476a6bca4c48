"""A run's own record: results.json (train and eval share its test-set part), written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mnist_budget.errors import UserError, first_line

FAILURE_FILE = "failure.json"  # written instead of results.json by a sweep job that failed


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename: an interrupted run never leaves a half-written file,
    and a full or read-only disk is one line naming the file."""
    staging = path.with_name(path.name + ".tmp")
    try:
        staging.write_text(text)
        staging.replace(path)
    except OSError as err:
        staging.unlink(missing_ok=True)
        raise UserError(f"could not write {path} ({err.strerror or first_line(err)}): free disk space or make {path.parent} writable") from err


def write_results(path: Path, results: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(results, indent=2, sort_keys=False) + "\n")


def final_val_acc(history: list[dict[str, Any]]) -> float:
    """The final weights' validation accuracy: the last validated epoch of a run's history."""
    validated = [row for row in history if "val/acc" in row]
    return validated[-1]["val/acc"] if validated else float("nan")


def test_set_scores(report: dict[str, Any], metrics: dict[str, float], eval_tta: bool) -> dict[str, Any]:
    """The test-set part of results.json, the same for a training run and for task=eval;
    ``eval_tta``: whether validation and test averaged each image's one-pixel shifts."""
    return {
        "eval_tta": eval_tta,
        "test_acc": metrics["test/acc"],
        "test_loss": metrics["test/loss"],
        "per_class_acc": report["per_class_acc"],
        "misclassified": len(report["mistakes"]),
        "confusion_matrix": report["confusion_matrix"],
    }
