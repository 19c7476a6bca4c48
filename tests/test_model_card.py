"""The model card: Hugging Face's form (a YAML header, then Markdown), generated from results.json, beside a
run's checkpoints and every export, quoting its recipe's figures from src/mnist_budget/reporting/model_card_figures.yaml."""

from __future__ import annotations

import json

import pytest
import yaml

from mnist_budget.errors import UserError
from mnist_budget.reporting.model_card import CARD, FIGURES, card_text, write_card


def results(overrides: list[str], **more) -> dict:
    return {
        "task": "train",
        "model": "fast_cnn",
        "params": 19_634,
        "budget": 20_000,
        "epochs": 4,
        "stopped_by": "the schedule's end (trainer.max_epochs=4)",
        "best_val_acc": 0.9934,
        "eval_tta": True,
        "test_acc": 0.9951,
        "per_class_acc": {str(d): 0.99 + d / 1000 for d in range(10)},
        "misclassified": 49,
        "train_seconds": 18.5,
        "tested_checkpoint": "last weights",
        "seed": 3,
        "overrides": overrides,
        "hardware": {
            "device": "cpu",
            "cpu": "AMD EPYC",
            "cpu_capability": "AVX512",
            "cpu_native_bf16": True,
            "threads": 2,
            "torch": "2.15.0",
        },
        "precision": "bf16-mixed",
        "dataset": "mnist",
        "val_size": 10_000,
        "extra_train": False,
        "date": "2026-12-06T06:00:00+00:00",
        **more,
    }


def split(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    _, head, body = card.split("---\n", 2)
    return yaml.safe_load(head), body


def test_the_header_holds_what_hugging_face_and_a_reader_need():
    head, body = split(card_text(results(["seed=3"])))
    (result,) = head["model-index"][0]["results"]
    assert result["dataset"] == {"type": "ylecun/mnist", "name": "MNIST", "split": "test"}
    assert result["metrics"][0]["value"] == 99.51 and result["metrics"][0]["args"]["seed"] == 3
    assert head["parameters"] == 19_634 and head["seed"] == 3 and head["date"] == "2026-12-06"
    assert head["dataset_split"]["train"] == 50_000 and head["dataset_split"]["validation"] == 10_000
    assert head["training_command"] == "python run.py seed=3"
    assert head["hardware"].startswith("AMD EPYC (AVX512, native bf16), 2 threads")
    assert head["license"] == "mit" and head["pipeline_tag"] == "image-classification"
    assert "**Official test set: 99.51 %**" in body and "weakest class 0: 99.00 %" in body


def test_the_body_quotes_the_recipes_figures_from_the_docs_table():
    table = yaml.safe_load(FIGURES.read_text())
    _, default = split(card_text(results([])))
    _, robust = split(card_text(results(["experiment=robust", "seed=1"])))
    for body, recipe in ((default, "default"), (robust, "robust")):
        for entry in table[recipe]["reads"]:
            assert f"**{entry['accuracy']:.1f} %** on {entry['set']}" in body
        for entry in table[recipe]["unsure"]:
            assert f"| {entry['flagged']} % | {entry['wrong_flagged']} % | {entry['wrong_unflagged']} % |" in body
    assert "**97.9 %**" in default and "**97.6 %**" in robust and "**97.9 %**" not in robust
    assert "changed its recipe" not in default + robust  # a seed leaves the recipe as it is


def test_a_card_reads_the_table_it_is_given_not_figures_of_its_own(tmp_path):
    figures = tmp_path / "figures.yaml"
    figures.write_text(
        "default:\n  reads:\n    - {set: a test set, accuracy: 12.3, how: once, source: docs/x.md}\n"
        "  unsure:\n    - {set: a test set, flagged: 1.5, wrong_flagged: 2.5, wrong_unflagged: 0.5, how: once}\n"
    )
    _, body = split(card_text(results([]), figures_path=figures))
    assert "**12.3 %** on a test set: once" in body and "| a test set | 1.5 % | 2.5 % | 0.5 % | once |" in body
    assert "97.9" not in body


def test_a_run_that_changed_its_recipe_is_told_the_figures_are_not_its_own():
    _, body = split(card_text(results(["experiment=robust", "trainer.max_epochs=2", "threads=1"])))
    assert "This run changed its recipe (`trainer.max_epochs=2`)" in body
    _, record = split(card_text(results(["experiment=record_8k"])))
    assert "No figures on handwriting outside MNIST are known for the `record_8k` recipe" in record
    assert "has not been measured for this recipe" in record


def test_an_export_card_without_results_says_what_it_knows(tmp_path):
    export = {
        "file": "model.onnx",
        "format": "web",
        "model": "fast_cnn",
        "params": 19_634,
        "checkpoint": "somewhere/last.ckpt",
        "dataset": "mnist",
        "input": {"name": "image", "shape": ["batch", 1, 28, 28]},
        "normalisation": {"mean": 0.1307, "std": 0.3081},
        "verified": {"max_abs_logit_diff": 2e-6, "test_acc": 0.9943},
    }
    head, body = split(card_text(None, export))
    assert head["model-index"][0]["results"][0]["metrics"][0]["value"] == 99.43 and head["parameters"] == 19_634
    assert "No results.json was found beside the checkpoint" in body and "no figures on other handwriting" in body


def test_a_readme_that_is_not_a_card_is_never_overwritten(tmp_path):
    (tmp_path / CARD).write_text("# my project\n")
    with pytest.raises(UserError, match="is not a model card that mnist-budget wrote"):
        write_card(tmp_path, results([]))
    assert (tmp_path / CARD).read_text() == "# my project\n"
    (tmp_path / CARD).unlink()
    write_card(tmp_path, results([]))
    write_card(tmp_path, results(["seed=9"], seed=9))  # its own card: rewritten
    assert split((tmp_path / CARD).read_text())[0]["seed"] == 9


def test_a_training_run_leaves_its_card_beside_its_checkpoints(trained_run):
    head, body = split((trained_run / "checkpoints" / CARD).read_text())
    recorded = json.loads((trained_run / "results.json").read_text())
    assert head["parameters"] == recorded["params"] and head["date"] == recorded["date"][:10]
    assert head["model-index"][0]["results"][0]["metrics"][0]["value"] == round(100 * recorded["test_acc"], 2)
    assert "This run changed its recipe" in body  # the short test run's limits are not the recipe's
