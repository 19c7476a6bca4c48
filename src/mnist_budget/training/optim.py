"""The optimiser and its learning-rate schedule, built from the optim config (conf/optim/).

Torch only, no Lightning: the command line's check builds the optimiser on the network's
parameters before any data loads (mnist_budget.tasks.checks), and the LightningModule builds the
same one when training starts (``Classifier.configure_optimizers``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate

from mnist_budget.errors import UserError


def build_optimizer(optim: Mapping[str, Any], parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``optim.optimizer`` on ``parameters``; a bad value (say ``optim.lr=-1``) is a UserError."""
    try:
        return instantiate(optim["optimizer"])(params=parameters)
    except (ValueError, TypeError) as err:
        raise UserError(f"invalid optimizer settings in optim: {err} (fix the optim.* override)") from err


def fit_warmup_share(pct_start: float, total_steps: int) -> float:
    """A one-cycle warm-up share that leaves both phases at least half a step on a short run.

    OneCycleLR divides by the length of each phase, so ``pct_start * total_steps == 1`` (say 0.2 of
    a 5-step smoke run) is a ZeroDivisionError; long runs keep the configured share unchanged.
    """
    return min(max(pct_start, 1.5 / total_steps), 1 - 0.5 / total_steps)


def build_scheduler(
    optim: Mapping[str, Any], optimizer: torch.optim.Optimizer, total_steps: Callable[[], int]
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``optim.scheduler`` (``None``: none) for ``optimizer``. A schedule that spans the run
    (one with a ``total_steps`` argument, such as OneCycleLR) is given ``total_steps()``, the
    optimiser steps of the whole run, asked only then."""
    scheduler_cfg = optim.get("scheduler")
    if not scheduler_cfg:
        return None
    # Plain lists, not OmegaConf's: a per-group setting (OneCycleLR's max_lr for muon_onecycle's two
    # groups) must be a list or tuple for torch, which takes anything else for one value for all.
    make_scheduler = instantiate(scheduler_cfg, _convert_="all")
    extra: dict[str, Any] = {}
    parameters = inspect.signature(make_scheduler.func).parameters
    if "total_steps" in parameters:
        extra["total_steps"] = steps = total_steps()
        if "pct_start" in parameters and steps >= 2:
            extra["pct_start"] = fit_warmup_share(make_scheduler.keywords.get("pct_start", 0.3), steps)
    return make_scheduler(optimizer, **extra)
