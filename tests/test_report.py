"""The results table reads each run's results.json."""

from __future__ import annotations

import json

import pytest

from mnist_budget.report import main


def fake_result(experiment: str, test_acc: float) -> dict:
    return {
        "experiment": experiment, "model": "gap_cnn", "params": 17_994, "budget": 20_000, "epochs": 6,
        "best_val_acc": 0.9943, "test_acc": test_acc, "test_loss": 0.02, "train_seconds": 80.0,
        "claim": "99.43 % val at epoch 20", "history": [],
    }


def test_table_has_one_row_per_run_with_its_figures(tmp_path, capsys):
    for name, acc in (("seed_001", 0.9951), ("seed_000", 0.9938)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(fake_result(name, acc)))
    main([str(tmp_path), "--output", str(tmp_path / "table.md")])
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == ["seed_000", "seed_001"]
    assert "**99.38 %**" in rows[0] and "17,994" in rows[0] and "13.3" in rows[0]
    assert (tmp_path / "table.md").read_text().splitlines()[2:] == rows


def test_no_results_is_an_error(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
