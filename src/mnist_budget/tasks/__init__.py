"""What ``run.py`` runs: the checks before a job (``preflight``, without torch or Lightning for
every check that needs neither), then the task that ``conf/task/<name>.yaml`` names.

A task's YAML sets ``task_function`` (the dotted path of the function that runs it with the
composed config and returns its metrics) and the task's own keys; the preflight's ``TASK_CHECKS``
holds the checks of its inputs. Adding a task: one YAML in conf/task/, one module here and, if it
has inputs to check, an entry in ``TASK_CHECKS``.
"""

from __future__ import annotations

from collections.abc import Callable

from hydra.utils import get_method
from omegaconf import DictConfig


def task_function(cfg: DictConfig) -> Callable[[DictConfig], dict[str, float]]:
    """The function that runs ``cfg``'s task (``task_function`` in conf/task/<name>.yaml)."""
    return get_method(str(cfg.task_function))
