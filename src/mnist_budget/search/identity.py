"""What a study was searched with, beyond its space: every setting that is not searched.

A study remembers its fixed settings (``fixed_settings``: the composed config, less what the search
samples and less where a run writes and how it shows itself), so that running it again with another
fixed setting (say ``trainer.max_epochs=2`` where its trials ran 3) is refused instead of mixing two
kinds of trial in one ranking (mnist_budget.search.study.check_settings).

It also remembers how to train any of its trials alone (``Recipe``): the command line's overrides, the
search config's own settings (``hparams_search=<name>`` sets keys such as ``data.val_size`` that a
plain run would not have), then the trial's values. Each trial's results.json records that list, and
the search's last line prints the best trial's (mnist_budget.search.report).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from mnist_budget.search.space import flatten

# Where a run writes and how it shows itself, not what it trains: a study may be continued with others.
NOT_IDENTITY = (
    "hydra",
    "paths",
    "logger",
    "threads",
    "task_function",
    "data.data_dir",
    "test_after_training",
    "trainer.default_root_dir",
)
WHERE_KEYS = ("dirpath", "save_dir")  # a callback's or logger's folder, wherever it sits: not identity either
# The search config's settings that training a trial alone should not repeat: how a search runs, and
# that its trials skip the test set (a trial trained alone is tested).
NOT_RECIPE = ("hydra", "paths", "task_function", "test_after_training")


def _excluded(key: str, roots: tuple[str, ...]) -> bool:
    return any(key == root or key.startswith(f"{root}.") for root in roots)


def leaves(cfg: DictConfig, skip: tuple[str, ...], lists: bool = True) -> dict[str, Any]:
    """The config's values by dotted key (``flatten``), each resolved on its own and the ``skip``
    roots never resolved: ``paths`` and ``hydra`` interpolate Hydra's runtime, which is not there
    when the command line's check asks."""
    found = {}
    for key in flatten(OmegaConf.to_container(cfg, resolve=False), lists=lists):
        if _excluded(key, skip):
            continue
        value = OmegaConf.select(cfg, key)
        found[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return found


def fixed_settings(cfg: DictConfig, searched: list[str]) -> dict[str, str]:
    """Every setting the search does not sample, as ``{dotted key: JSON text}``."""
    values = leaves(cfg, NOT_IDENTITY)
    return {
        key: json.dumps(value, sort_keys=True)
        for key, value in sorted(values.items())
        if key not in searched and key.rsplit(".", 1)[-1] not in WHERE_KEYS
    }


def changed_settings(saved: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """``key=saved value (now value)`` for each fixed setting that differs: changed ones first, then
    ones added or removed."""
    keys = sorted(set(saved) | set(now), key=lambda k: (k not in saved or k not in now, k))
    return [
        f"{key}={saved.get(key, '(absent)')} (now {now.get(key, 'absent')})"
        for key in keys
        if saved.get(key) != now.get(key)
    ]


def override_value(value: Any) -> str:
    """A plain value in Hydra's override syntax (a string with spaces or symbols quoted)."""
    if isinstance(value, list):
        return "[" + ",".join(map(override_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str) and not reads_back(value):
        return "'" + value.replace("'", "\\'") + "'"
    return str(value)


def reads_back(text: str) -> bool:
    """Whether Hydra reads ``key=<text>`` as the string ``text`` itself (not ``true``, ``null``, a
    number or a parse error): then it needs no quotes."""
    try:
        (override,) = OverridesParser.create().parse_overrides([f"key={text}"])
    except HydraException:
        return False
    return override.value() == text


@dataclass(frozen=True)
class Recipe:
    """How to train a trial of the study alone: ``python run.py <overrides(params)>``."""

    command_line: list[str]  # the search command's own overrides, less the search's
    search_config: list[str]  # the settings hparams_search=<name> adds to a plain run
    added: list[str]  # searched keys that a plain run's config does not have (set with "+")

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        values = [f"{'+' if key in self.added else ''}{key}={override_value(v)}" for key, v in params.items()]
        return [*self.command_line, *self.search_config, *values]

    def as_dict(self) -> dict[str, list[str]]:
        return {"command_line": self.command_line, "search_config": self.search_config, "added": self.added}


def plain_command_line(arguments: list[str]) -> list[str]:
    """The search command's overrides that a plain run takes: not the search config, not Hydra's."""
    return [a for a in arguments if not a.lstrip("+~").startswith(("hparams_search=", "hydra."))]


def recipe_of(search_cfg: DictConfig, plain_cfg: DictConfig, arguments: list[str], searched: list[str]) -> Recipe:
    """The recipe, from the search's config and the config of ``python run.py <plain_command_line>``."""
    search_values = leaves(search_cfg, NOT_RECIPE, lists=False)
    plain_values = leaves(plain_cfg, NOT_RECIPE, lists=False)
    settings = []
    for key, value in search_values.items():
        if key in searched or plain_values.get(key, KeyError) == value:
            continue
        settings.append(f"{'' if key in plain_values else '+'}{key}={override_value(value)}")
    added = [key for key in searched if OmegaConf.select(plain_cfg, key, default=KeyError) is KeyError]
    return Recipe(plain_command_line(arguments), settings, added)
