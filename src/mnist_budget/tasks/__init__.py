"""The tasks ``run.py`` runs, one module each, named by ``conf/task/<name>.yaml``.

A task's YAML sets ``task_function`` (the dotted path of the function that runs it with the
composed config and returns its metrics) and the task's own keys. The task's module also defines
``check(cfg, run_dir, multirun)``: the cheap checks of the task's inputs that the command line
runs before Hydra writes anything (mnist_budget.preflight). So that a refused command does not
wait seconds for Lightning to load, a task module imports Lightning inside its task function.
Adding a task: one YAML in conf/task/ and one module here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.utils import get_method
from omegaconf import DictConfig


def task_function(cfg: DictConfig) -> Callable[[DictConfig], dict[str, float]]:
    """The function that runs ``cfg``'s task (``task_function`` in conf/task/<name>.yaml)."""
    return get_method(str(cfg.task_function))


def task_check(cfg: DictConfig) -> Callable[[DictConfig, Path, bool], Any]:
    """The ``check`` function of the module that holds ``cfg``'s task function."""
    module_name = str(cfg.task_function).rsplit(".", 1)[0]
    return importlib.import_module(module_name).check
