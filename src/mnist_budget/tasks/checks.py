"""The command line's checks that need torch: building the network and the augmentation, asking
torch about the device, reading a checkpoint. The preflight (mnist_budget.tasks.preflight) runs
them last, after every check that needs no torch has passed; none of them imports Lightning,
except for a trainer key that the command line adds (``++trainer.<name>=...``), which only
Lightning's Trainer can tell apart from a typo.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_budget.checkpoints import check_dataset, checkpoint_to_resume, network_of
from mnist_budget.data.augment import check_augment
from mnist_budget.data.sets import dataset_name
from mnist_budget.errors import UserError, find_user_error, first_line
from mnist_budget.hardware import run_settings
from mnist_budget.models import check_network
from mnist_budget.rules import runs_on_slurm, runs_search
from mnist_budget.training.distill import load_teacher
from mnist_budget.training.optim import build_optimizer


def check_extra_train(cfg: DictConfig) -> None:
    """Build the extra training digits (``extra_train=fonts``: its own checks refuse bad settings;
    nothing is downloaded or drawn yet); refuse them when fonts are missing and may not be
    downloaded. (Beside another data set they are refused by mnist_budget.rules.)"""
    settings = cfg.data.get("extra_train")
    if settings is None:
        return
    try:
        extra = instantiate(settings)
    except Exception as err:  # noqa: BLE001 - Hydra wraps the component's own error
        raise find_user_error(err) or UserError(
            f"data.extra_train cannot be built ({first_line(err.__cause__ or err).rstrip('.')}): fix the data.extra_train.* override"
        ) from err
    extra.check_fonts(str(cfg.data.data_dir))


def check_trainer_arguments(names: list[str]) -> None:
    """Trainer keys that the command line adds (``++trainer.foo=1``) must be arguments of Lightning's
    Trainer."""
    if not names:
        return
    import lightning as L  # only here: the one check that needs Lightning, for a rare command

    arguments = set(inspect.signature(L.Trainer.__init__).parameters)
    for name in names:
        if name not in arguments:
            raise UserError(
                f"trainer.{name} is not an argument of Lightning's Trainer: remove it or fix its spelling "
                "(the arguments: python -c 'import lightning; help(lightning.Trainer.__init__)')"
            )


def searched_shape(cfg: DictConfig) -> DictConfig:
    """The config whose network meets the budget: the run's own, or for a search over the network's
    shape (``model.net.*`` keys in its space) the smallest shape the space holds, so that a budget
    nothing fits is refused in one line before any trial."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    if not runs_search(cfg) or not params:
        return cfg
    from mnist_budget.search.budget import shape_keys, smallest_shape, with_values  # Optuna: a search's only
    from mnist_budget.search.space import parse_space

    space = parse_space(OmegaConf.to_container(params, resolve=True))
    if not shape_keys(space):
        return cfg
    values, params = smallest_shape(space, cfg)
    if params > cfg.model.budget:
        shape = " ".join(f"{key}={value}" for key, value in values.items())
        raise UserError(
            f"model.budget={cfg.model.budget} is below the smallest network of the search space ({params:,} parameters: "
            f"{shape}): raise model.budget, or lower the ranges of hydra.sweeper.params"
        )
    return with_values(cfg, values)


def check_training(cfg: DictConfig, run_dir: Path, multirun: bool) -> None:
    """The network and the augmentation on a small batch, the optimiser on the network, the extra training digits, the
    teacher to distil from (``distill.teacher``: read and checked, not kept), and the checkpoint to resume (a sweep's
    jobs each have their own folder: ``ckpt_path`` is checked per job)."""
    net = check_network(searched_shape(cfg).model.net, cfg.model.name, cfg.model.budget)
    build_optimizer(OmegaConf.to_container(cfg.optim, resolve=True), net.parameters())
    if cfg.get("augment"):
        check_augment(cfg.augment)
    check_extra_train(cfg)
    load_teacher(cfg)
    if cfg.get("ckpt_path") and not multirun:
        model, optim = (OmegaConf.to_container(cfg[group], resolve=True) for group in ("model", "optim"))
        checkpoint_to_resume(str(cfg.ckpt_path), run_dir, model, optim, dataset_name(cfg))


def check_with_torch(cfg: DictConfig, run_dir: Path, multirun: bool, added_trainer_keys: list[str]) -> None:
    """What the preflight checks last: the device (``trainer=gpu`` without a GPU) and the memory
    layout (not for jobs that run on a cluster's nodes: this machine's devices do not matter), the
    trainer keys the command line adds, then the task's network or checkpoint."""
    if not runs_on_slurm(OmegaConf.select(cfg, "hydra.launcher")):
        run_settings(cfg)
    check_trainer_arguments(added_trainer_keys)
    task = str(cfg.task_name)
    if task == "train":
        check_training(cfg, run_dir, multirun)
    elif task in ("eval", "predict", "export", "serve"):
        _, hparams = network_of(cfg)
        if task == "eval" or (task == "export" and cfg.get("verify", True)):
            check_dataset(cfg, hparams)
