"""A run's own record: results.json (train and eval share its test-set part), written atomically
(mnist_budget.files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mnist_budget.files import write_atomically

FAILURE_FILE = "failure.json"  # written instead of results.json by a sweep job that failed


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
