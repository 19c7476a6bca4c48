"""The pictures: parameters against test accuracy over seeds (``--plot``), and a sweep's accuracy by its key."""

from __future__ import annotations

import json

from PIL import Image

from mnist_budget.reporting.report import main
from mnist_budget.reporting.tables import claimed_accuracy, plot_records, write_sweep_summary


def run(experiment: str, params: int, seed: int, acc: float, cpu: str = "AMD EPYC", claim: str | None = None) -> dict:
    return {
        "experiment": experiment,
        "model": experiment,
        "params": params,
        "budget": 20_000,
        "epochs": 15,
        "best_val_acc": acc,
        "test_acc": acc,
        "test_loss": 0.02,
        "train_seconds": 60.0,
        "claim": claim,
        "seed": seed,
        "overrides": [f"experiment={experiment}", f"seed={seed}"],
        "hardware": {"cpu": cpu, "cpu_capability": "AVX512", "cpu_native_bf16": True},
        "precision": "bf16-mixed",
        "eval_tta": False,
        "history": [],
    }


def write_runs(folder, runs: list[dict]) -> None:
    for index, result in enumerate(runs):
        (folder / str(index)).mkdir(parents=True)
        (folder / str(index) / "results.json").write_text(json.dumps(result))


def test_the_records_plot_shows_each_recipes_seeds_and_its_claim(tmp_path, capsys):
    runs = [run("record_8k", 7_866, seed, acc) for seed, acc in enumerate((0.9950, 0.9955, 0.9951, 0.9949, 0.9956), 1)]
    claim = "99.42 % test at epoch 15"
    # reference_001's seeds ran on two machines: still one recipe in the picture.
    runs += [
        run("reference_001", 18_932, s, a, "Intel Xeon", claim) for s, a in ((1, 0.9946), (2, 0.9944), (3, 0.9950))
    ]
    runs += [run("reference_001", 18_932, s, a, "AMD EPYC", claim) for s, a in ((4, 0.9939), (5, 0.9943))]
    write_runs(tmp_path / "runs", runs)
    main([str(tmp_path / "runs"), "--plot", str(tmp_path / "records.png")])
    assert f"plot: {tmp_path / 'records.png'}" in capsys.readouterr().out
    assert Image.open(tmp_path / "records.png").size[0] >= 600
    points = {p["label"]: p for p in plot_records(runs, tmp_path / "again.png")}
    reference = points["reference_001 (5 seeds)"]
    assert reference["x"] == 18_932 and reference["claim"] == 99.42
    assert (round(reference["min"], 2), round(reference["mean"], 2), round(reference["max"], 2)) == (
        99.39,
        99.44,
        99.50,
    )
    assert points["record_8k (5 seeds)"]["claim"] is None


def test_a_claim_is_read_as_the_first_figure_it_states():
    assert claimed_accuracy("99.54 % best, 99.52 % final (test)") == 99.54
    assert claimed_accuracy("> 99.4 % test in about 15 epochs, ~8k params") == 99.4
    assert claimed_accuracy("mean >= 99.60 % over seeds 1-5") == 99.60
    assert claimed_accuracy(None) is None and claimed_accuracy("the best") is None


def test_a_sweep_summary_gets_its_plot_by_swept_key(tmp_path):
    sweep = tmp_path / "sweep"
    runs = []
    for lr, accs in (("0.2", (0.9940, 0.9946)), ("0.05", (0.9921, 0.9925))):
        for seed, acc in enumerate(accs, 1):
            result = run("fast_cnn", 19_634, seed, acc)
            result.update(overrides=[f"optim.lr={lr}", f"seed={seed}"], optimized_metric="val/acc_best")
            runs.append(result)
    write_runs(sweep, runs)
    write_sweep_summary(sweep)
    assert Image.open(sweep / "summary.png").size[0] >= 600
    from mnist_budget.reporting.tables import write_sweep_plot

    ((key, groups),) = write_sweep_plot(sweep)  # one panel: the seed is not a swept key of the picture
    assert key == "optim.lr" and [g["x"] for g in groups] == ["0.05", "0.2"]
    assert [round(g["mean"], 2) for g in groups] == [99.23, 99.43] and [g["label"] for g in groups] == ["n=2", "n=2"]
