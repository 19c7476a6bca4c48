"""Values that make no sense stop the run before any data loads, naming the key and the range;
a diverging run stops at its first NaN loss; a run at chance level says so."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from conftest import SHORT_RUN, group_options
from mnist_budget.errors import UserError
from mnist_budget.rules import PRECISIONS, RULES, check_config
from mnist_budget.tasks.preflight import check_run
from mnist_budget.tasks.train import train

BAD_VALUES = [
    ("optim.momentum=2", "optim.momentum=2 is invalid: it must be in [0, 1)"),
    ("optim.momentum=-0.1", "optim.momentum=-0.1 is invalid"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 is invalid: it must be a positive integer"),
    ("data.val_size=60000", "data.val_size=60000 is invalid: it must be an integer from 1 to 59999"),
    ("data.val_size=0", "data.val_size=0 is invalid"),
    ("data.eval_batch_size=-5", "data.eval_batch_size=-5 is invalid"),
    ("optim.label_smoothing=1.5", "optim.label_smoothing=1.5 is invalid"),
    ("optim.weight_decay=-1", "optim.weight_decay=-1 is invalid"),
    ("model.net.dropout=1.2", "model.net.dropout=1.2 is invalid"),
    ("data.batch_size=0", "data.batch_size=0 is invalid: it must be a positive integer"),
    ("seed=abc", "seed='abc' is invalid: it must be an integer"),
    ("model.budget=0", "model.budget=0 is invalid"),
    ("callbacks.compile.mode=fast", "callbacks.compile.mode='fast' is invalid: it must be null (no compile) or one of"),
    ("callbacks.compile.backend=tvm", "callbacks.compile.backend='tvm' is invalid: it must be one of inductor"),
    (
        "callbacks=[default,early_stopping]",
        "validates only after the last epoch, so it can never stop early: add evaluation=every_epoch",
    ),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES)
def test_bad_value_is_refused_before_data_loads(make_cfg, tmp_path, override, message):
    # The command line's checks (mnist_budget.tasks.runner runs them before Hydra's job starts),
    # which read no data: only the files' presence, which the fixture's data has.
    cfg = make_cfg(override)
    with pytest.raises(UserError) as raised:
        check_run(cfg, tmp_path)
    assert message in str(raised.value)
    assert not (tmp_path / "results.json").exists()


def test_every_shipped_config_passes_the_checks_and_every_rule_guards_a_key_one_has(make_cfg, tmp_path):
    teacher = tmp_path / "teacher.ckpt"  # the value rules ask only that the file is there
    teacher.touch()
    configs = [
        make_cfg(),
        make_cfg("callbacks=[default,ema,early_stopping]", "evaluation=every_epoch"),
        make_cfg("task=predict"),
        make_cfg("distill=teacher", f"distill.teacher={teacher}"),
    ]
    configs += [make_cfg(f"experiment={name}") for name in group_options("experiment")]
    for cfg in configs:
        check_config(cfg)
    # A renamed key would otherwise switch its rule off without a word.
    for rule in RULES:
        assert any(OmegaConf.select(cfg, rule.key, default="missing") != "missing" for cfg in configs), rule.key


def test_the_precisions_accepted_are_lightnings():
    # Lightning's own list is private: this test fails loudly when it changes.
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT_INT, _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    lightning = {
        *get_args(_PRECISION_INPUT_STR),
        *get_args(_PRECISION_INPUT_STR_ALIAS),
        *map(str, get_args(_PRECISION_INPUT_INT)),
    }
    assert set(PRECISIONS) == {"auto"} | lightning


def test_non_finite_loss_stops_the_run_naming_epoch_and_step(make_cfg, tmp_path):
    cfg = make_cfg("optim.lr=1e6", "trainer.max_epochs=1")
    with pytest.raises(UserError, match=r"the training loss became (nan|inf) at epoch 1, step \d+"):
        train(cfg)
    assert not (tmp_path / "results.json").exists()


def test_a_run_at_chance_level_is_flagged(make_cfg, tmp_path):
    # A learning rate this small leaves the network as it was initialised: it guesses.
    cfg = make_cfg("optim.lr=1e-9", *SHORT_RUN)
    train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test_acc"] < 0.15 and results["chance_level"] is True
