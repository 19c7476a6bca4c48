"""The one checkpoint loader (weights_only, refusals in one line) and the atomic writer."""

from __future__ import annotations

import pytest
import torch

from conftest import malicious_checkpoint
from mnist_budget.checkpoints import (
    checkpoint_to_resume,
    first_difference,
    load_checkpoint,
    load_network,
    resolve_checkpoint_path,
)
from mnist_budget.errors import UserError
from mnist_budget.models import build_network
from mnist_budget.training.callbacks import AtomicCheckpointIO


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"hyper_parameters": {"model": {"name": "reference_004"}}, "state_dict": {}}, path)
    with pytest.raises(UserError, match=r"trained for model 'reference_004', not 'gap_cnn'"):
        load_checkpoint(path, "gap_cnn")


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "unsafe.ckpt"
    torch.save({"hyper_parameters": {"model": torch.nn.Linear(2, 2)}, "state_dict": {}}, path)
    with pytest.raises(UserError, match=r"is not a safe, readable checkpoint"):
        load_checkpoint(path, "gap_cnn")


def test_checkpoint_whose_unpickling_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = malicious_checkpoint(tmp_path / "malicious.ckpt", marker)
    with pytest.raises(UserError, match=r"is not a safe, readable checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["top", "nested"])
def test_a_saved_network_config_may_build_only_this_projects_networks(tmp_path, where):
    """weights_only=True makes unpickling safe, but the network is rebuilt from the saved config: a
    ``_target_`` there must not reach any other callable (here builtins.open, which would create a file)."""
    marker = tmp_path / "code-ran"
    opener = {"_target_": "builtins.open", "_args_": [str(marker), "w"]}
    net = opener if where == "top" else {"_target_": "mnist_budget.models.fast_cnn.FastCNN", "channels": [opener]}
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"name": "fast_cnn", "net": net}}}, path)
    with pytest.raises(UserError, match=r"asks to build 'builtins.open', which is not one of this project's networks"):
        load_network(path)
    assert not marker.exists()


def test_a_model_config_that_builds_no_network_is_refused():
    with pytest.raises(UserError, match=r"model.net built a dict, not a network"):
        build_network({"_target_": "builtins.dict"}, "odd")


@pytest.mark.parametrize(
    "fields",
    [
        {"state_dict": [1, 2], "hyper_parameters": {}},
        {"state_dict": {"w": "not a tensor"}},
        {"state_dict": {}, "hyper_parameters": None},
        {"state_dict": {}, "hyper_parameters": {"model": None}},
    ],
    ids=["state-dict-a-list", "not-tensors", "hparams-none", "model-none"],
)
def test_a_checkpoint_of_the_wrong_shape_is_refused_in_one_line(tmp_path, fields):
    path = tmp_path / "odd.ckpt"
    torch.save(fields, path)
    with pytest.raises(UserError, match=r"odd.ckpt is not a Lightning checkpoint of this project"):
        load_checkpoint(path)


def test_resuming_from_weights_alone_is_refused_before_training(tmp_path):
    """A weights-only save (ModelCheckpoint's save_weights_only) has no optimiser or loop state to resume."""
    model, optim = {"name": "fast_cnn"}, {"lr": 0.4}
    path = tmp_path / "weights.ckpt"
    torch.save(
        {"state_dict": {}, "epoch": 1, "global_step": 10, "hyper_parameters": {"model": model, "optim": optim}}, path
    )
    with pytest.raises(
        UserError, match=r"not the training state a run resumes from \(no loops, optimizer_states, lr_schedulers\)"
    ):
        checkpoint_to_resume(str(path), tmp_path, model, optim)


def test_truncated_and_missing_checkpoints_are_refused(tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}, "hyper_parameters": {}}, whole)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(whole.read_bytes()[:-300])
    with pytest.raises(UserError, match=r"truncated.ckpt is not a safe, readable checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(UserError, match=r"does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "plain.ckpt").write_text("hello")
    with pytest.raises(UserError, match=r"plain.ckpt is not a safe, readable checkpoint"):
        load_checkpoint(tmp_path / "plain.ckpt")


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    before = path.read_bytes()

    def dies_midway(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt  # what a kill in the middle of a save looks like from inside

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no staging file left behind


def test_last_means_this_run_folders_last_checkpoint(tmp_path):
    with pytest.raises(UserError, match=r"ckpt_path=last found no .*last.ckpt: resume inside"):
        resolve_checkpoint_path("last", tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_checkpoint_path("last", tmp_path) == tmp_path / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint_path("a/b.ckpt", tmp_path).as_posix() == "a/b.ckpt"


def test_first_difference_names_the_key():
    saved = {"lr": 0.2, "scheduler": {"pct_start": 0.2}}
    assert first_difference(saved, {"lr": 0.2, "scheduler": {"pct_start": 0.3}}, "optim") == (
        "optim.scheduler.pct_start=0.3 (the checkpoint has 0.2)"
    )
    assert first_difference(saved, dict(saved), "optim") is None
    # A checkpoint from before a key existed (say model.net.pool_first): the fix is to remove the key.
    old = {"net": {"channels": [8, 16]}}
    new = {"net": {"channels": [8, 16], "pool_first": True}}
    assert first_difference(old, new, "model") == (
        "model.net.pool_first=True (the checkpoint has no such key: add ~model.net.pool_first)"
    )
    assert first_difference(old, {"net": {"channels": [8, 16]}}, "model") is None


def test_a_full_disk_is_one_line_and_the_previous_checkpoint_stays_loadable(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "hyper_parameters": {}}, path)

    def disk_full(obj, file, *args, **kwargs):
        file.write(b"part of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(UserError, match=rf"could not write the checkpoint {path} \(No space left on device\)"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_read_only_folder_is_one_line_for_results(tmp_path, monkeypatch):
    from pathlib import Path

    from mnist_budget.reporting.results import write_results

    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", read_only)
    with pytest.raises(UserError, match=r"could not write .*results.json \(Permission denied\)"):
        write_results(tmp_path / "results.json", {"test_acc": 0.99})


def test_a_checkpoint_names_no_module_of_this_package_but_its_network(trained_run):
    # Checkpoints written before the package was re-layered load as they did: the only module path a
    # checkpoint holds is its network's (mnist_budget.models.*, which keeps its import paths); the
    # callbacks' and the data module's states are keyed by class name alone.
    import re

    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    named = set(re.findall(r"mnist_budget[\w.]*", repr({k: v for k, v in checkpoint.items() if k != "state_dict"})))
    assert named and all(name.startswith("mnist_budget.models.") for name in named), named
    assert {"EpochHistory", "RandomState", "MNISTDataModule"} <= set(checkpoint["callbacks"]) | set(checkpoint)


def test_a_checkpoint_from_before_pool_first_and_dropout_on_builds_the_network_it_was_trained_as(tmp_path):
    from mnist_budget.models.fast_cnn import FastCNN

    trained_as = FastCNN(pool_first=False, dropout_on="maps")
    net_config = {"_target_": "mnist_budget.models.fast_cnn.FastCNN", "channels": [8, 16, 32, 40], "pointwise": 40}
    path = tmp_path / "old.ckpt"
    torch.save(
        {
            "state_dict": {f"net.{key}": value for key, value in trained_as.state_dict().items()},
            "hyper_parameters": {"model": {"name": "fast_cnn", "budget": 20000, "net": net_config}},
        },
        path,
    )
    net, hparams = load_network(path)
    assert repr(net) == repr(trained_as) != repr(FastCNN())
    assert hparams["model"]["net"]["pool_first"] is False and hparams["model"]["net"]["dropout_on"] == "maps"


@pytest.mark.parametrize(
    ("experiment", "old_name", "old_net"),
    [
        (
            "record_8k",
            "tiny",
            {
                "_target_": "mnist_budget.models.fast_cnn.FastCNN",
                "channels": [8, 12, 16, 16, 16],
                "pointwise": 16,
                "dropout": 0.01,
                "pool_first": True,
            },
        ),
        (
            "reference_003",
            "reference_003",
            {"_target_": "mnist_budget.models.reference_003.SimpleMNISTNet", "dropout": 0.05},
        ),
    ],
)
def test_a_checkpoint_of_a_renamed_model_loads_and_resumes_under_the_new_name(
    make_cfg, tmp_path, experiment, old_name, old_net
):
    from omegaconf import OmegaConf

    cfg = make_cfg(f"experiment={experiment}")
    model, optim = (OmegaConf.to_container(cfg[group], resolve=True) for group in ("model", "optim"))
    net = build_network(model["net"], model["name"])
    old_model = {"name": old_name, "budget": model["budget"], "net": old_net}
    training_state = dict.fromkeys(("epoch", "global_step", "loops", "optimizer_states", "lr_schedulers"), 0)
    path = tmp_path / "old.ckpt"
    torch.save(
        {
            "state_dict": {f"net.{key}": value for key, value in net.state_dict().items()},
            "hyper_parameters": {"model": old_model, "optim": optim},
            **training_state,
        },
        path,
    )
    loaded, hparams = load_network(path)
    assert repr(loaded) == repr(net) and hparams["model"]["name"] == model["name"]
    assert checkpoint_to_resume(str(path), tmp_path, model, optim)[0] == path
