"""Checkpoints are read only through ``load_checkpoint`` (``weights_only=True``).

(They are written by mnist_budget.checkpoint_io.AtomicCheckpointIO.)

Every task that reads a checkpoint (resume, test, eval, predict, export) goes through
``load_checkpoint``, which refuses a file that is missing, truncated, unsafe to unpickle or
trained for another model with one ``UserError`` line. (Which checkpoint a run resumes from, and
whether it fits: mnist_budget.resume.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mnist_budget.errors import UserError, first_line
from mnist_budget.mnist_files import DataSet, find_dataset
from mnist_budget.models import build_network

NETWORKS_PACKAGE = "mnist_budget.models."


def load_checkpoint(path: str | Path, model_name: str | None = None) -> dict[str, Any]:
    """A Lightning checkpoint as plain tensors and values, loaded without running any pickled code.

    ``model_name``: refuse a checkpoint that was trained for another model.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ckpt_path={path} does not exist: give the path of a .ckpt file from a run's checkpoints/")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means "not a checkpoint we can load safely"
        raise UserError(f"ckpt_path={path} is not a safe, readable checkpoint ({first_line(err)}): pick another file") from err
    if not (isinstance(checkpoint, dict) and is_weights(checkpoint.get("state_dict"))
            and isinstance(checkpoint.get("hyper_parameters", {}), dict)
            and isinstance(checkpoint.get("hyper_parameters", {}).get("model", {}), dict)):
        raise UserError(f"ckpt_path={path} is not a Lightning checkpoint of this project: pick a .ckpt from a run's checkpoints/")
    saved = checkpoint.get("hyper_parameters", {}).get("model", {}).get("name")
    if model_name is not None and saved != model_name:
        raise UserError(
            f"ckpt_path={path} was trained for model {saved!r}, not {model_name!r}: pass model={saved} or another checkpoint"
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


def load_network(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained network of a checkpoint, in eval mode, and the checkpoint's hyper-parameters.

    The network is rebuilt from the model config saved in the checkpoint, so eval, predict and
    export need no ``model=`` override; weights that do not fit it are refused in one line.
    """
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters", {})
    model = hparams.get("model") or {}
    if "net" not in model:
        raise UserError(f"ckpt_path={path} holds no model config (hyper_parameters.model.net): use a checkpoint from this project's runs")
    check_network_targets(model["net"], f"ckpt_path={path}")
    net = build_network(model["net"], str(model.get("name")))
    weights = {key[len("net."):]: value for key, value in checkpoint["state_dict"].items() if key.startswith("net.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise UserError(f"ckpt_path={path} does not hold weights of model {model.get('name')!r} ({first_line(err)}): pick a checkpoint of a run of that model") from err
    return net.eval(), hparams


def network_of(cfg: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network of the checkpoint a task names with ``ckpt_path`` (eval, predict, export)."""
    from mnist_budget.validate import required

    return load_network(required(cfg, "ckpt_path", "a .ckpt from a run's checkpoints/"))


def dataset_of(hparams: dict[str, Any]) -> DataSet:
    """The data set a checkpoint's network learnt (its normalisation; export also writes its class
    names); checkpoints written before data sets were named learnt MNIST."""
    name = str(hparams.get("dataset", "mnist"))
    try:
        return find_dataset(name)
    except UserError as err:
        raise UserError(f"the checkpoint learnt data set {name!r}, which this version does not know: use a checkpoint of this version's runs") from err


def check_dataset(cfg: Any, hparams: dict[str, Any]) -> None:
    """A task that reads a data set's files with a checkpoint (eval, export's check) reads the one
    the checkpoint learnt: another would be scored with the wrong classes and normalisation."""
    from mnist_budget.mnist_files import dataset_name

    trained_on, reading = dataset_of(hparams).name, dataset_name(cfg)
    if trained_on != reading:
        raise UserError(
            f"ckpt_path={cfg.ckpt_path} was trained on {trained_on}, data.dataset={reading}: "
            f"use it with its own data set (data={trained_on})"
        )
