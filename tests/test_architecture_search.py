"""The search over the network's shape under a budget (conf/hparams_search/architecture.yaml,
src/mnist_budget/search/budget.py and identity.py): refusals before any trial, shapes over the
budget never trained, trials never tested, the study's fixed settings, and the best trial's command
line, which composes to the very config the trial trained with."""

from __future__ import annotations

import csv
import json
import re
import shlex

import optuna
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_cfg, preflight_refusal, run_cli
from mnist_budget.models import count_parameters
from mnist_budget.models.fast_cnn import FastCNN
from mnist_budget.search.budget import OVER_BUDGET, PARAMETERS, smallest_shape, with_values
from mnist_budget.search.identity import fixed_settings
from mnist_budget.search.space import parse_space

TINY = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "hydra/launcher=basic",
    "hydra.sweeper.n_jobs=1",
    "threads=1",
)


def test_a_4x4_width_of_0_leaves_that_conv_out():
    without = FastCNN(channels=(4, 8, 8, 0), pointwise=0)
    shorter = FastCNN(channels=(4, 8, 8), pointwise=0)
    assert count_parameters(without) == count_parameters(shorter) < count_parameters(FastCNN((4, 8, 8, 8), 0))
    assert without(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_the_smallest_shape_of_the_shipped_space_is_its_narrowest(tmp_path, mnist_root):
    cfg = compose_cfg(tmp_path, mnist_root, "hparams_search=architecture", "model.budget=1000")
    space = parse_space(cfg.hydra.sweeper.params)
    values, params = smallest_shape(space, cfg)
    assert values["model.net.channels.3"] == 0 and values["model.net.pointwise"] <= 1  # a 1-wide 1x1 shrinks the Linear
    narrower = with_values(cfg, {**values, "model.net.channels.2": 3})  # below the space: smaller still
    assert (
        params < 1000
        and count_parameters(FastCNN(**{k: v for k, v in narrower.model.net.items() if k != "_target_"})) < params
    )


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model.budget=50"], "model.budget=50 is below the smallest network of the search space"),
        (["model.budget=abc"], "model.budget='abc' is invalid: it must be a positive integer"),
        (["model.budget=0"], "model.budget=0 is invalid: it must be a positive integer"),
        (['+hydra.sweeper.params.model.net.widths="int(interval(2,8))"'], "model.net.widths is not a key"),
        (['+hydra.sweeper.params.model.net.dropout="interval(0.5,0.1)"'], "an empty interval [0.5, 0.1]"),
        (['+hydra.sweeper.params.model.net.pool_first="choice()"'], "is not a search range"),
    ],
)
def test_a_bad_architecture_search_is_refused_before_any_trial(tmp_path, mnist_root, overrides, fragment):
    sweep = tmp_path / "search"
    line = preflight_refusal(
        "-m",
        "hparams_search=architecture",
        f"hydra.sweep.dir={sweep}",
        *overrides,
        run_dir=tmp_path / "x",
        data_dir=mnist_root,
    )
    assert fragment in line, line
    assert not sweep.exists()  # no study written


def test_a_tiny_architecture_search_trains_only_shapes_within_the_budget(tmp_path, mnist_root):
    sweep = tmp_path / "search"
    command = (
        "-m",
        "experiment=record_1k",
        "hparams_search=architecture",
        "hydra.sweeper.enqueue_base=true",
        "model.budget=1500",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=2",
    )
    result = run_cli(*command, *TINY, data_dir=mnist_root, run_dir=tmp_path / "unused")
    output = result.stderr + result.stdout
    assert result.returncode == 0, output[-3000:]

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "study.journal")))
    study = optuna.load_study(study_name="architecture_1500", storage=storage)
    base = study.trials[0]  # enqueue_base: the experiment's own network and knobs come first
    search = compose_cfg(tmp_path / "s", mnist_root, *command[1:], *TINY[:3])
    assert base.user_attrs["base"] and base.params == {key: OmegaConf.select(search, key) for key in base.params}
    assert base.state == optuna.trial.TrialState.COMPLETE  # the experiment's own network (987 parameters) trained
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    over = [t for t in study.trials if t.constraints.get(OVER_BUDGET, 0) > 0]
    assert len(trained) == 2 and all(t.user_attrs[PARAMETERS] <= 1500 for t in trained)
    assert over and all(t.state == optuna.trial.TrialState.PRUNED and t.user_attrs[PARAMETERS] > 1500 for t in over)
    assert all(not (sweep / f"trial_{t.number}" / "results.json").exists() for t in over)  # never trained
    for trial in trained:  # scored on validation, never tested
        results = json.loads((sweep / f"trial_{trial.number}" / "results.json").read_text())
        assert results["tested"] is False and "test_acc" not in results and results["params"] <= 1500

    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert "test acc" not in rows[0] and len(rows) == len(study.trials)
    assert sum(row["status"].startswith("over budget: ") for row in rows) == len(over)
    assert f"2 of 2 trials (2 complete, {len(over)} over budget)" in output

    # The best trial's command line composes to the config it trained with (every fixed setting and its values).
    command_line = re.search(r"train it alone with: python run.py (.*)", output).group(1)
    alone = compose_cfg(tmp_path / "alone", mnist_root, *shlex.split(command_line))
    best = with_values(search, study.best_trial.params)
    assert fixed_settings(alone, []) == fixed_settings(best, [])
    assert alone.test_after_training  # trained alone, it is tested

    # The study is continued only with the settings it was searched with.
    line = preflight_refusal(
        *command, *TINY[:2], "trainer.limit_val_batches=2", run_dir=tmp_path / "x", data_dir=mnist_root
    )
    assert "was searched with trainer.limit_val_batches=1 (now 2)" in line and "hydra.sweeper.study_name" in line


def test_a_double_stem_adds_one_full_resolution_conv_and_separable_stops_at_every_conv_but_the_first():
    single, double = FastCNN((4, 8, 8, 8), 8), FastCNN((4, 8, 8, 8), 8, stem="double")
    assert count_parameters(double) - count_parameters(single) == 9 * 4 * 4 + 2 * 4  # the conv and its BatchNorm
    assert double(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(FastCNN((4, 8, 8), 0, separable=5)) == count_parameters(FastCNN((4, 8, 8), 0, separable=2))


@pytest.mark.parametrize(
    "value", ["true", "null", "123", "1e-4", "a b", "it's", "x/y.ckpt", 1e-4, -3, None, True, [1, "a b"]]
)
def test_a_recipe_value_reads_back_as_itself(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mnist_budget.search.identity import override_value

    (override,) = OverridesParser.create().parse_overrides([f"key={override_value(value)}"])
    assert override.value() == value
