"""A search space: ``hydra.sweeper.params`` in Hydra's sweep syntax (``interval(a, b)``,
``tag(log, interval(a, b))``, ``choice(a, b, ...)``, ``range(a, b, step)``) as Optuna
distributions, checked against the composed config before any trial starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from mnist_budget.errors import UserError, first_line

KEY = "hydra.sweeper.params"


def flatten(value: Any, prefix: str = "", lists: bool = False) -> dict[str, Any]:
    """``{"optim": {"lr": ...}}`` (a key added on the command line) as ``{"optim.lr": ...}``, as the
    YAML writes it; with ``lists``, list items too (``{"a": [1, 2]}`` as ``{"a.0": 1, "a.1": 2}``)."""
    if isinstance(value, Mapping) or (lists and isinstance(value, list)):
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        found: dict[str, Any] = {}
        for key, item in items:
            found.update(flatten(item, f"{prefix}{key}.", lists))
        return found or {prefix.rstrip("."): value}
    return {prefix.rstrip("."): value}


def parse_space(params: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """The distributions of ``params`` ({config key: sweep expression}), or a one-line refusal."""
    space = {}
    for key, expression in flatten(params or {}).items():
        try:
            (override,) = OverridesParser.create().parse_overrides([f"{key}={expression}"])
            space[str(key)] = distribution(override)
        except (HydraException, ValueError) as err:
            raise UserError(
                f"{KEY}.{key}={expression!r} is not a search range ({first_line(err)}): use interval(low, high) with "
                "low < high, tag(log, interval(low, high)), choice(a, b, ...) or range(start, stop, step)"
            ) from err
    return space


def distribution(override: Override) -> BaseDistribution:
    """One sweep expression as an Optuna distribution (Hydra's stop of a range is exclusive)."""
    if not override.is_sweep_override():
        raise ValueError("a single value, not a range")
    value = override.value()
    if override.is_choice_sweep():
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        if not choices:
            raise ValueError("an empty choice")
        return CategoricalDistribution(choices)
    if override.is_interval_sweep():
        log = "log" in value.tags
        if value.start >= value.end:
            raise ValueError(f"an empty interval [{value.start}, {value.end}]")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    if override.is_range_sweep():
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if not values:
            raise ValueError("an empty range")
        return CategoricalDistribution(values)
    raise ValueError(f"{override.input_line} is no sweep Optuna can sample")


def check_space(space: Mapping[str, BaseDistribution], cfg: DictConfig) -> None:
    """Each searched key is a value the composed config has (not a config group, not a typo)."""
    if not space:
        raise UserError(f"{KEY} is empty: name at least one key to search (conf/hparams_search/)")
    for key in space:
        value = OmegaConf.select(cfg, key, default=KeyError)
        if value is KeyError:
            raise UserError(
                f"{KEY}.{key} is not a key of the config: fix its spelling (python run.py --cfg job lists every key)"
            )
        if isinstance(value, (DictConfig, dict)) or OmegaConf.is_config(value):
            raise UserError(f"{KEY}.{key} is a group of settings, not a value: search one of its keys")


def describe(space: Mapping[str, BaseDistribution]) -> dict[str, str]:
    """The space as plain strings, stored with the study so that a re-run can tell it is the same."""
    return {key: repr(dist) for key, dist in sorted(space.items())}


def as_overrides(params: Mapping[str, Any]) -> list[str]:
    """A trial's values as command-line overrides (``optim.lr=0.1234``)."""
    return [f"{key}={value}" for key, value in params.items()]
