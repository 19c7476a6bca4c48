"""A checkpoint file: read safely, its network, the data set it learnt, whether it resumes a run.

Every task that reads a checkpoint (resume, test, eval, predict, export, serve) goes through
``load_checkpoint`` (``weights_only=True``), which refuses a file that is missing, truncated,
unsafe to unpickle or trained for another model with one ``UserError`` line. Torch only, no
Lightning: predict, export and serve read checkpoints without importing it, and so does the
command line's check of a resume. (Checkpoints are written by the Trainer, through
mnist_budget.training.callbacks: ``AtomicCheckpointIO``, ``LastCheckpoint``, ``Interruption``.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mnist_budget.data.sets import DataSet, dataset_name, find_dataset
from mnist_budget.errors import UserError, first_line
from mnist_budget.models import build_network
from mnist_budget.rules import check_checkpoint_file, required

log = logging.getLogger(__name__)

NETWORKS_PACKAGE = "mnist_budget.models."
# Arguments a network gained after checkpoints of it were written, with the value those checkpoints
# were trained with: their saved config lacks the key, and the constructor's default is now another.
ADDED_ARGUMENTS = {
    "mnist_budget.models.fast_cnn.FastCNN": {"pool_first": False, "dropout_on": "maps", "separable": 0, "stem": "pool"}
}
# Models and network classes that were renamed after checkpoints of them were written: old name -> new.
RENAMED_MODELS = {"tiny": "record_8k", "micro": "record_4k"}
RENAMED_NETWORKS = {
    "mnist_budget.models.reference_003.SimpleMNISTNet": "mnist_budget.models.reference_003.Reference003Net"
}
# A checkpoint written before runs recorded their data set learnt MNIST.
DEFAULT_DATASET = "mnist"


def load_checkpoint(path: str | Path, model_name: str | None = None, key: str = "ckpt_path") -> dict[str, Any]:
    """A Lightning checkpoint as plain tensors and values, loaded without running any pickled code.

    ``model_name``: refuse a checkpoint that was trained for another model; ``key``: the setting that
    named the file, for the refusals (``distill.teacher`` names a teacher's).
    """
    path = Path(path)
    check_checkpoint_file(key, path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means "not a checkpoint we can load safely"
        raise UserError(
            f"{key}={path} is not a safe, readable checkpoint ({first_line(err)}): pick another file"
        ) from err
    if not (
        isinstance(checkpoint, dict)
        and is_weights(checkpoint.get("state_dict"))
        and isinstance(checkpoint.get("hyper_parameters", {}), dict)
        and isinstance(checkpoint.get("hyper_parameters", {}).get("model", {}), dict)
    ):
        raise UserError(
            f"{key}={path} is not a Lightning checkpoint of this project: pick a .ckpt from a run's checkpoints/"
        )
    saved = saved_model(checkpoint.get("hyper_parameters", {})).get("name")
    if model_name is not None and saved != model_name:
        raise UserError(
            f"{key}={path} was trained for model {saved!r}, not {model_name!r}: pass model={saved} or another checkpoint"
        )
    return checkpoint


def is_weights(state_dict: Any) -> bool:
    """A state dict: names mapped to tensors (what ``load_state_dict`` takes)."""
    return isinstance(state_dict, dict) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state_dict.items()
    )


def check_network_targets(net: Any, source: str) -> None:
    """Refuse a saved network config that names anything but this package's networks.

    ``weights_only=True`` keeps unpickling from running code, but the network is rebuilt from the
    config saved beside the weights (Hydra's instantiate): a ``_target_`` there, at any depth, could
    name any importable callable (``os.system``). Only ``mnist_budget.models.*`` may be built.
    """
    if isinstance(net, dict):
        target = net.get("_target_")
        if target is not None and not (isinstance(target, str) and target.startswith(NETWORKS_PACKAGE)):
            raise UserError(
                f"{source} asks to build {target!r}, which is not one of this project's networks "
                f"({NETWORKS_PACKAGE}*): use a checkpoint from this project's runs"
            )
        for value in net.values():
            check_network_targets(value, source)
    elif isinstance(net, list):
        for value in net:
            check_network_targets(value, source)


def saved_model(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's model config in today's terms: a renamed model or network class under its
    new name, and the ``ADDED_ARGUMENTS`` it lacks filled in with the values it was trained with."""
    model = dict(hparams.get("model") or {})
    if model.get("name") in RENAMED_MODELS:
        model["name"] = RENAMED_MODELS[model["name"]]
    net = model.get("net")
    if isinstance(net, dict):
        net = {**net, "_target_": RENAMED_NETWORKS[net["_target_"]]} if net.get("_target_") in RENAMED_NETWORKS else net
        model["net"] = {**ADDED_ARGUMENTS.get(str(net.get("_target_")), {}), **net}
    return model


def load_network(path: str | Path, key: str = "ckpt_path") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained network of a checkpoint, in eval mode, and the checkpoint's hyper-parameters.

    The network is rebuilt from the model config saved in the checkpoint, so eval, predict and
    export need no ``model=`` override; weights that do not fit it are refused in one line.
    ``key``: the setting that named the file, for the refusals.
    """
    checkpoint = load_checkpoint(path, key=key)
    model = saved_model(checkpoint.get("hyper_parameters", {}))
    hparams = {**checkpoint.get("hyper_parameters", {}), "model": model}
    if "net" not in model:
        raise UserError(
            f"{key}={path} holds no model config (hyper_parameters.model.net): use a checkpoint from this project's runs"
        )
    check_network_targets(model["net"], f"{key}={path}")
    net = build_network(model["net"], str(model.get("name")))
    weights = {
        name[len("net.") :]: value for name, value in checkpoint["state_dict"].items() if name.startswith("net.")
    }
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise UserError(
            f"{key}={path} does not hold weights of model {model.get('name')!r} ({first_line(err)}): pick a checkpoint of a run of that model"
        ) from err
    return net.eval(), hparams


def network_of(cfg: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network of the checkpoint a task names with ``ckpt_path`` (eval, predict, export, serve)."""
    return load_network(required(cfg, "ckpt_path", "a .ckpt from a run's checkpoints/"))


def dataset_of(hparams: dict[str, Any]) -> DataSet:
    """The data set a checkpoint's network learnt (its normalisation and class names): the one rule
    for reading a checkpoint's data set, ``DEFAULT_DATASET`` where it names none."""
    name = str(hparams.get("dataset", DEFAULT_DATASET))
    try:
        return find_dataset(name)
    except UserError as err:
        raise UserError(
            f"the checkpoint learnt data set {name!r}, which this version does not know: use a checkpoint of this version's runs"
        ) from err


def check_dataset(cfg: Any, hparams: dict[str, Any]) -> None:
    """A task that reads a data set's files with a checkpoint (eval, export's check) reads the one
    the checkpoint learnt: another would be scored with the wrong classes and normalisation."""
    trained_on, reading = dataset_of(hparams).name, dataset_name(cfg)
    if trained_on != reading:
        raise UserError(
            f"ckpt_path={cfg.ckpt_path} was trained on {trained_on}, data.dataset={reading}: "
            f"use it with its own data set (data={trained_on})"
        )


def last_checkpoint_path(run_dir: Path) -> Path:
    """Where a run folder keeps the checkpoint it resumes from (conf/callbacks/last_checkpoint.yaml
    writes it there: ``${paths.output_dir}/checkpoints``, file ``last.ckpt``)."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def resolve_checkpoint_path(ckpt_path: str, output_dir: Path) -> Path | None:
    """``last`` means this run folder's ``checkpoints/last.ckpt`` (resuming in place); ``auto`` the
    same if it exists, else a fresh start (``None``: a job that a scheduler requeued resumes, a
    new one starts); a path is itself."""
    if ckpt_path not in ("last", "auto"):
        return Path(ckpt_path)
    path = last_checkpoint_path(output_dir)
    if ckpt_path == "auto":
        return path if path.is_file() else None
    if not path.is_file():
        raise UserError(
            f"ckpt_path=last found no {path}: resume inside the killed run's folder with "
            "hydra.run.dir=<that folder> (and its overrides), or give ckpt_path=<path to a .ckpt>"
        )
    return path


# What Lightning restores when it resumes (a weights-only save, save_weights_only=true, lacks the last four).
TRAINING_STATE = ("epoch", "global_step", "loops", "optimizer_states", "lr_schedulers")


def checkpoint_to_resume(
    ckpt_path: str, run_dir: Path, model: dict[str, Any], optim: dict[str, Any], dataset: str = "mnist"
) -> tuple[Path | None, dict[str, Any]]:
    """The checkpoint a run resumes from (``last``, ``auto``: ``run_dir``'s) and its contents
    (``None, {}`` for ``auto`` in a folder without one).

    Refused in one line: a file that is missing or unsafe, one written with other model or
    optimiser settings or on another data set (a resumed run must continue the same recipe to
    match an uninterrupted one), or one that holds weights without the training state.
    """
    path = resolve_checkpoint_path(ckpt_path, run_dir)
    if path is None:
        return None, {}
    checkpoint = load_checkpoint(path, model.get("name"))
    saved = checkpoint.get("hyper_parameters", {})
    saved_dataset = dataset_of(saved).name
    for group, was, current in (
        ("model", saved_model(saved), model),
        ("optim", saved.get("optim"), optim),
        ("data.dataset", saved_dataset, dataset),
    ):
        difference = first_difference(was, current, group)
        if difference:
            raise UserError(f"resuming {path} with {difference}: resume with the settings of the run that wrote it")
    missing = [key for key in TRAINING_STATE if key not in checkpoint]
    if missing:
        raise UserError(
            f"ckpt_path={path} holds weights but not the training state a run resumes from (no {', '.join(missing)}): "
            "resume from a run's checkpoints/last.ckpt, or use this file with task=eval|predict|export"
        )
    return path, checkpoint


def first_difference(saved: Any, current: Any, prefix: str) -> str | None:
    """The first key (dotted) where two nested configs differ, or ``None`` when they agree."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            if key not in saved:  # a key added to the config since the checkpoint was written
                return f"{prefix}.{key}={current[key]} (the checkpoint has no such key: add ~{prefix}.{key})"
            found = first_difference(saved.get(key), current.get(key), f"{prefix}.{key}")
            if found:
                return found
        return None
    return None if saved == current else f"{prefix}={current} (the checkpoint has {saved})"


def resume_from(cfg: DictConfig, model: dict[str, Any], optim: dict[str, Any]) -> tuple[str | None, int | None]:
    """The checkpoint path a training run resumes from (``ckpt_path``, ``last`` resolved) and its
    global step; ``(None, None)`` for a fresh run."""
    if not cfg.get("ckpt_path"):
        return None, None
    path, checkpoint = checkpoint_to_resume(
        str(cfg.ckpt_path), Path(cfg.paths.output_dir), model, optim, dataset_name(cfg)
    )
    if path is None:
        return None, None
    log.info("resuming %s (epoch %d, step %d)", path, checkpoint["epoch"] + 1, checkpoint["global_step"])
    return str(path), int(checkpoint["global_step"])
