"""The record recipes keep to their budgets, and the search that found them runs on each of them."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mnist_budget.models import count_parameters

# experiment: (parameters under, epochs at most), the targets of docs/records.md's table
RECORDS = {"record_20k": (20_000, 20), "record_8k": (8_000, 15), "record_4k": (4_000, 20)}


@pytest.mark.parametrize("experiment", sorted(RECORDS))
def test_record_stays_within_its_parameter_and_epoch_limits(make_cfg, experiment):
    limit, max_epochs = RECORDS[experiment]
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.model.budget <= limit
    assert count_parameters(instantiate(cfg.model.net)) < limit
    assert cfg.trainer.max_epochs <= max_epochs
    assert cfg.data.val_size == 50  # the final recipe trains on 59,950 images
    assert cfg.test_checkpoint == "last"  # the records test the final weights


@pytest.mark.parametrize("experiment", sorted(RECORDS))
def test_the_record_search_composes_and_every_searched_key_exists(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", "hparams_search=record")
    sweeper = cfg.hydra.sweeper
    assert sweeper.study_name == experiment
    assert cfg.data.val_size == 10_000  # trials are scored on 10,000 held-out images, not 50
    assert cfg.optimized_metric == "val/acc"
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key
