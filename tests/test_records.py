"""The record recipes keep to their budgets, and the search that found them runs on each of them."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mnist_budget.models import count_parameters

# experiment: (parameters under, epochs at most), the budgets of docs/frontier.md's table
RECORDS = {
    "record_20k": (20_000, 20),
    "record_8k": (8_000, 15),
    "record_4k": (4_000, 20),
    "record_2k": (2_000, 20),
    "record_1k": (1_000, 20),
}


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
@pytest.mark.parametrize("search", ["record", "architecture"])
def test_each_search_composes_on_each_record_and_every_searched_key_exists(make_cfg, experiment, search):
    cfg = make_cfg(f"experiment={experiment}", f"hparams_search={search}")
    sweeper = cfg.hydra.sweeper
    assert sweeper.study_name == (experiment if search == "record" else f"architecture_{cfg.model.budget}")
    assert cfg.data.val_size == 10_000  # trials are scored on 10,000 held-out images, not 50
    assert cfg.optimized_metric == "val/acc"
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key
