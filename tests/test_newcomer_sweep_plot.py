"""A sweep over seeds only still gets its summary.png (README.md: every sweep's folder holds one):
each job's test and validation accuracy by seed, with their means."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mnist_budget.reporting.tables import write_sweep_plot, write_sweep_summary


def job(seed: int, test_acc: float, val_acc: float, overrides: list[str] | None = None) -> dict:
    """A results.json as a sweep job writes it (the keys the summary reads)."""
    return {
        "model": "fast_cnn",
        "params": 19_634,
        "epochs": 1,
        "best_val_acc": val_acc,
        "optimized_metric": "val/acc_best",
        "eval_tta": True,
        "test_acc": test_acc,
        "train_seconds": 2.0,
        "seed": seed,
        "overrides": overrides if overrides is not None else [f"seed={seed}", "trainer.max_epochs=1"],
        "history": [{"epoch": 1, "val/acc": val_acc}],
    }


def write_jobs(sweep, results: list[dict]) -> None:
    for number, result in enumerate(results):
        (sweep / str(number)).mkdir(parents=True)
        (sweep / str(number) / "results.json").write_text(json.dumps(result))


def test_a_seed_only_sweep_plots_each_seeds_accuracy_and_the_mean(tmp_path):
    sweep = tmp_path / "sweep"
    # Jobs in folder order 0, 1, 2; the seeds out of order: the picture orders them.
    write_jobs(sweep, [job(10, 0.9950, 0.9940), job(2, 0.9940, 0.9946), job(3, 0.9945, 0.9943)])
    (sweep / "3").mkdir()
    (sweep / "3" / "failure.json").write_text(json.dumps({"status": "failed", "error": "x", "overrides": ["seed=4"]}))
    write_sweep_summary(sweep)
    assert Image.open(sweep / "summary.png").size[0] >= 600
    ((xlabel, points),) = write_sweep_plot(sweep)
    assert xlabel == "seed"
    assert [p["x"] for p in points] == ["2", "3", "10"]  # the failed job has no point
    assert [round(p["test"], 2) for p in points] == [99.40, 99.45, 99.50]
    assert [round(p["val"], 2) for p in points] == [99.46, 99.43, 99.40]


def test_a_seed_only_sweep_ranked_on_the_final_weights_plots_their_validation_accuracy(tmp_path):
    sweep = tmp_path / "sweep"
    results = [job(seed, 0.99, 0.98) for seed in (1, 2)]
    for result in results:
        result.update(optimized_metric="val/acc", history=[{"epoch": 1, "val/acc": 0.97}, {"epoch": 2}])
    write_jobs(sweep, results)
    ((_, points),) = write_sweep_plot(sweep)
    assert [p["val"] for p in points] == [pytest.approx(97.0)] * 2


def test_a_sweep_of_one_job_plots_it_by_job(tmp_path):
    sweep = tmp_path / "sweep"
    write_jobs(sweep, [job(1, 0.99, 0.98, overrides=[])])
    ((xlabel, points),) = write_sweep_plot(sweep)
    assert xlabel == "job" and [p["x"] for p in points] == ["0"]
    assert (sweep / "summary.png").is_file()


def test_a_sweep_over_another_key_still_plots_that_key_not_the_seed(tmp_path):
    sweep = tmp_path / "sweep"
    write_jobs(sweep, [job(s, 0.99, 0.98, overrides=[f"optim.lr={lr}", f"seed={s}"]) for s, lr in ((1, 0.1), (2, 0.2))])
    ((key, groups),) = write_sweep_plot(sweep)
    assert key == "optim.lr" and [g["x"] for g in groups] == ["0.1", "0.2"]


def test_no_plot_before_a_job_has_finished(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    assert write_sweep_plot(sweep) == [] and not (sweep / "summary.png").exists()
