"""A search over the network's shape under ``model.budget`` (conf/hparams_search/architecture.yaml).

A trial's shape is known before any data loads, so its parameter count is too: a shape over the
budget is never trained. The search worker (mnist_budget.tasks.search) tells Optuna such a trial is
infeasible through a constraint (``OVER_BUDGET``: parameters minus budget, feasible at 0 or
below), which Optuna's TPE and GP samplers learn from, and counts it "over budget". Before any
trial, the command line's check asks for the smallest shape the space holds (``smallest_shape``):
a budget that nothing fits is refused, not searched.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

from mnist_budget.errors import UserError
from mnist_budget.models import build_network, count_parameters

SHAPE_PREFIX = "model.net."  # searched keys under it change the network, so its parameter count
OVER_BUDGET = "parameters_over_budget"  # the trials' Optuna constraint: parameters minus model.budget
PARAMETERS = "parameters"  # a trial's user attribute: its network's trainable parameters


def is_over_budget(trial: FrozenTrial) -> bool:
    """A trial whose network was over the budget (and so never trained)."""
    return trial.constraints.get(OVER_BUDGET, 0.0) > 0


def shape_keys(space: Mapping[str, BaseDistribution]) -> list[str]:
    """The searched keys that shape the network."""
    return [key for key in space if key.startswith(SHAPE_PREFIX)]


def with_values(cfg: DictConfig, values: Mapping[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with ``values`` ({dotted key: value}) set, as a trial sets its own."""
    changed = copy.deepcopy(cfg)
    with open_dict(changed):
        for key, value in values.items():
            OmegaConf.update(changed, key, value, merge=False)
    return changed


def network_parameters(cfg: DictConfig) -> int:
    """Trainable parameters of the network ``cfg.model.net`` describes (built, never run)."""
    return count_parameters(build_network(cfg.model.net, str(cfg.model.name)))


def candidates(dist: BaseDistribution) -> list[Any]:
    """The values tried for one key when looking for the smallest shape: a range's two ends (an int
    range's second value too: a width of 1 can cost less than 0, which leaves a conv out and so
    widens what follows), every choice."""
    if isinstance(dist, IntDistribution):
        return sorted({dist.low, min(dist.low + 1, dist.high), dist.high})
    if isinstance(dist, FloatDistribution):
        return [dist.low, dist.high]
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    raise TypeError(f"no candidates for {dist!r}")


def smallest_shape(space: Mapping[str, BaseDistribution], cfg: DictConfig) -> tuple[dict[str, Any], int]:
    """The values of the space's shape keys that give the fewest parameters, and that count.

    Coordinate by coordinate (each key's candidates with the others held), twice over: exact for
    widths, whose parameter count only grows with each, and for few choices, without building
    every combination of a large space."""
    keys = shape_keys(space)
    values = {key: candidates(space[key])[0] for key in keys}
    best = buildable_size(cfg, values)
    for _, key in itertools.product(range(2), keys):
        for value in candidates(space[key]):
            trial = {**values, key: value}
            params = buildable_size(cfg, trial)
            if params < best:
                values, best = trial, params
    if best == math.inf:  # nothing the coordinates reached builds: the network's own line says why
        network_parameters(with_values(cfg, values))
    return values, int(best)


def buildable_size(cfg: DictConfig, values: Mapping[str, Any]) -> float:
    """``network_parameters`` with ``values`` set; infinite where the network refuses them."""
    try:
        return network_parameters(with_values(cfg, values))
    except UserError:
        return math.inf
