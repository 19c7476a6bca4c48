"""The results table reads each run's results.json."""

from __future__ import annotations

import json

import pytest
import yaml

from mnist_budget.reporting.report import main


def fake_result(experiment: str, test_acc: float) -> dict:
    return {
        "experiment": experiment,
        "model": "gap_cnn",
        "params": 17_994,
        "budget": 20_000,
        "epochs": 6,
        "best_val_acc": 0.9943,
        "test_acc": test_acc,
        "test_loss": 0.02,
        "train_seconds": 80.0,
        "claim": "99.43 % val at epoch 20",
        "history": [],
    }


def test_table_has_one_row_per_run_with_its_figures(tmp_path, capsys):
    for name, acc in (("reference_001", 0.9951), ("reference_000", 0.9938)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(fake_result(name, acc)))
    main([str(tmp_path), "--output", str(tmp_path / "table.md")])
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == ["reference_000", "reference_001"]
    assert "**99.38 %**" in rows[0] and "17,994" in rows[0] and "13.3" in rows[0]
    assert (tmp_path / "table.md").read_text().splitlines()[2:] == rows


def test_no_results_is_an_error(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])


def seed_run(seed: int, test_acc: float, *, overrides: list[str], cpu_bf16: bool = True, seconds: float = 40.0) -> dict:
    hardware = {
        "device": "cpu",
        "cpu": "Test CPU",
        "cpu_capability": "AVX512" if cpu_bf16 else "AVX2",
        "cpu_native_bf16": cpu_bf16,
        "threads": 2,
        "torch": "2.x",
    }
    return {
        **fake_result("fast_cnn", test_acc),
        "seed": seed,
        "overrides": [f"seed={seed}", *overrides],
        "hardware": hardware,
        "precision": "bf16-mixed" if cpu_bf16 else "32-true",
        "train_seconds": seconds,
    }


def test_seed_statistics_group_runs_that_differ_only_in_seed(tmp_path, capsys):
    from mnist_budget.reporting.tables import seed_statistics

    runs = [
        seed_run(s, acc, overrides=["optim.lr=0.1"], seconds=30 + s)
        for s, acc in zip(range(1, 6), (0.9950, 0.9940, 0.9960, 0.9945, 0.9955), strict=True)
    ]
    runs.append(seed_run(1, 0.9900, overrides=["optim.lr=0.2"]))  # another config
    runs.append(seed_run(1, 0.9930, overrides=["optim.lr=0.1"], cpu_bf16=False))  # another CPU kind
    rows = {(row["overrides"], row["precision"]): row for row in seed_statistics(runs)}
    assert len(rows) == 3
    five = rows[("optim.lr=0.1", "bf16-mixed")]
    assert five["seeds"] == [1, 2, 3, 4, 5]
    assert five["mean"] == pytest.approx(0.995)
    assert five["min"] == pytest.approx(0.994)
    assert five["std"] == pytest.approx(0.000790569, rel=1e-4)  # sample standard deviation
    assert five["median_train_seconds"] == 33
    assert rows[("optim.lr=0.1", "32-true")]["seeds"] == [1]

    for i, run in enumerate(runs):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "results.json").write_text(json.dumps(run))
    main([str(tmp_path)])
    out = capsys.readouterr().out
    seed_rows = [line for line in out.split("Seed statistics")[1].splitlines() if line.startswith("| fast_cnn")]
    assert len(seed_rows) == 1  # single-seed configs get no statistics row
    assert "99.50, 99.40, 99.60, 99.45, 99.55" in seed_rows[0] and "**99.50 %**" in seed_rows[0]
    assert "Test CPU (AVX512, native bf16)" in seed_rows[0]


def test_runs_scored_with_tta_are_another_config_and_say_so(tmp_path, capsys):
    from mnist_budget.reporting.tables import seed_statistics

    once = [seed_run(s, 0.9940, overrides=[]) for s in (1, 2)]  # results.json before eval_tta: scored once
    tta = [{**seed_run(s, 0.9950, overrides=[]), "eval_tta": True} for s in (1, 2)]
    rows = {row["scored"]: row for row in seed_statistics(once + tta)}
    assert set(rows) == {"once", "TTA"} and rows["TTA"]["mean"] == pytest.approx(0.995)
    for i, run in enumerate(once + tta):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "results.json").write_text(json.dumps(run))
    main([str(tmp_path)])
    table = capsys.readouterr().out.split("Seed statistics")[0]
    assert sum("| TTA |" in line for line in table.splitlines()) == 2


def test_the_frontier_joins_the_records_and_leaves_untested_trials_out(tmp_path, capsys):
    runs = [
        ("record_1k", 900, 0.990),
        ("record_1k", 900, 0.992),
        ("record_2k", 1900, 0.993),
        ("record_2k", 1900, 0.994),
    ]
    runs += [("fast_cnn", 19_634, 0.995), ("fast_cnn", 19_634, 0.996)]
    for index, (experiment, params, acc) in enumerate(runs):
        result = {**seed_run(index % 2 + 1, acc, overrides=[]), "experiment": experiment, "params": params}
        (tmp_path / f"run_{index}").mkdir()
        (tmp_path / f"run_{index}" / "results.json").write_text(json.dumps(result))
    trial = {key: value for key, value in fake_result("search_trial", 0.5).items() if key != "test_acc"}
    (tmp_path / "trial_0").mkdir()
    (tmp_path / "trial_0" / "results.json").write_text(json.dumps({**trial, "tested": False}))
    main([str(tmp_path), "--frontier", str(tmp_path / "frontier.png")])
    out = capsys.readouterr().out
    assert "search_trial" not in out and (tmp_path / "frontier.png").stat().st_size > 10_000

    from mnist_budget.reporting.tables import ANCHORS, collect_results, frontier_plot

    frontier = frontier_plot(collect_results([tmp_path]), tmp_path / "again.png")
    measured = [(p["x"], round(p["mean"], 2), p["min"]) for p in frontier if "AMD" not in p["label"]]
    assert measured == [(900, 99.1, 99.0), (1900, 99.35, 99.3)]
    # the records measured before, from the shipped anchors, complete the line
    shipped = yaml.safe_load(ANCHORS.read_text())["frontier"]
    assert {p["name"] for p in frontier if "name" in p} == {row["name"] for row in shipped}
