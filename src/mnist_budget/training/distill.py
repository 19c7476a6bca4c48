"""Knowledge distillation (Hinton et al., 2015): a trained teacher's softened probabilities as a
second target beside the labels (``distill=teacher``, conf/distill/).

The teacher is read like every checkpoint (mnist_budget.checkpoints.load_network: ``weights_only``,
its network rebuilt from its own saved config, only this project's networks), frozen, and held in
a plain object (``Distillation``), not as a submodule: the student's state dict, checkpoints and
hyper-parameters stay those of a run without a teacher, so eval, predict, export and serve read
them as they read any. Torch only: the command line's checks load the teacher without Lightning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_budget.checkpoints import dataset_of, load_network
from mnist_budget.data.sets import dataset_name
from mnist_budget.errors import UserError

log = logging.getLogger(__name__)

KEY = "distill.teacher"  # the setting that names the teacher's checkpoint, for the refusals
# Checkpoints do not record the validation split; a run folder's config does, beside checkpoints/.
RUN_CONFIG = Path(".hydra") / "config.yaml"
SPLIT_KEYS = ("val_size", "split_seed")  # what picks the held-out images (mnist_budget.data.loading)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    hard_loss: torch.Tensor,
    temperature: float,
    weight: float,
) -> torch.Tensor:
    """``(1 - weight) * hard_loss + weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    The soft term's gradients shrink as 1/T^2: T^2 restores their scale, so that ``weight`` is the
    same share at any temperature. The softmaxes run in float32: under mixed precision, half-precision
    logits divided by T lose the small differences the soft targets carry.
    """
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    soft = F.kl_div(student, teacher, reduction="batchmean", log_target=True) * temperature**2
    return (1 - weight) * hard_loss + weight * soft


@dataclass
class Distillation:
    """A frozen teacher and how much its softened probabilities count (conf/distill/teacher.yaml)."""

    teacher: nn.Module
    temperature: float
    weight: float

    def loss(self, images: torch.Tensor, student_logits: torch.Tensor, hard_loss: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch, the teacher reading the same (augmented) images as the student."""
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        return distillation_loss(student_logits, teacher_logits, hard_loss, self.temperature, self.weight)

    def follow(self, student: nn.Module) -> None:
        """Put the teacher on the student's device, in its dtype: a ``*-true`` precision casts the
        student's weights and its batches, which a float32 teacher would refuse."""
        weight = next(student.parameters())
        self.teacher.to(device=weight.device, dtype=weight.dtype)


def teacher_path(cfg: DictConfig) -> str | None:
    """The teacher checkpoint a run names (``distill.teacher``), or ``None``: no distillation."""
    value = OmegaConf.select(cfg, KEY, default=None)
    return None if value in (None, "") else str(value)


def load_teacher(cfg: DictConfig) -> Distillation | None:
    """The run's teacher, frozen and in eval mode, with its settings (``None`` without one); a file
    that is no checkpoint of this project, or one that learnt other images, is refused in one line."""
    path = teacher_path(cfg)
    if path is None:
        return None
    net, hparams = load_network(path, key=KEY)
    check_teacher_data(cfg, path, hparams)
    teacher = net.eval().requires_grad_(False)
    return Distillation(teacher, float(cfg.distill.temperature), float(cfg.distill.weight))


def check_teacher_data(cfg: DictConfig, path: str, hparams: dict[str, Any]) -> None:
    """The teacher learnt the student's data set with the same validation split (where its run
    folder records it): a teacher that trained on the student's validation images would pass
    their answers on, and validation would flatter the student."""
    trained_on, reading = dataset_of(hparams).name, dataset_name(cfg)
    if trained_on != reading:
        raise UserError(
            f"{KEY}={path} was trained on {trained_on}, this run on data.dataset={reading}: "
            f"distil from a teacher trained on {reading} with this run's data settings"
        )
    recorded = recorded_split(Path(path))
    for key, value in recorded.items():
        if value is not None and value != cfg.data.get(key):
            raise UserError(
                f"{KEY}={path} was trained with data.{key}={value} (its run's {RUN_CONFIG}), this run has "
                f"data.{key}={cfg.data.get(key)}, so the teacher may have learnt this run's validation images: "
                "train the teacher with this run's data settings (data=..., data.val_size, data.split_seed)"
            )


def recorded_split(checkpoint: Path) -> dict[str, Any]:
    """The teacher run's ``data.val_size`` and ``data.split_seed`` from the config its run folder
    keeps beside ``checkpoints/`` (empty where there is none: a checkpoint moved out of its folder)."""
    folder = checkpoint.absolute().parent
    config = folder.parent / RUN_CONFIG
    if folder.name != "checkpoints" or not config.is_file():
        return {}
    try:
        saved = OmegaConf.load(config)  # a YAML safe load: no code runs
    except Exception as err:  # noqa: BLE001 - an unreadable config records no split to compare
        log.debug("%s: %s", config, err)
        return {}
    return {
        key: OmegaConf.select(saved, f"data.{key}", default=None, throw_on_resolution_failure=False)
        for key in SPLIT_KEYS
    }
