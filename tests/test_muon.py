"""optim=muon_onecycle: Muon on the conv kernels, Nesterov SGD on the rest, one schedule for both."""

from __future__ import annotations

import io
import json

import pytest
import torch

from conftest import SHORT_RUN, preflight_refusal, run_cli
from mnist_budget.tasks.train import train
from mnist_budget.training.module import Classifier
from mnist_budget.training.muon import MUON_GROUP, SGD_GROUP, MuonSGD
from mnist_budget.training.optim import build_optimizer, build_scheduler


def test_every_conv_kernel_is_in_the_muon_group_and_the_rest_in_sgds(make_cfg):
    module = Classifier.from_config(make_cfg("optim=muon_onecycle"))
    optimizer = build_optimizer(module.hparams.optim, module.parameters())
    groups = optimizer.param_groups
    assert [group["muon"] for group in groups] == [False, True]
    kernels = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Conv2d)}
    assert kernels and {id(p) for p in groups[MUON_GROUP]["params"]} == kernels
    assert {id(p) for p in groups[SGD_GROUP]["params"]} == {id(p) for p in module.parameters()} - kernels
    # One schedule drives both, each group to its own peak.
    build_scheduler(module.hparams.optim, optimizer, lambda: 10)
    optim = module.hparams.optim
    assert [group["max_lr"] for group in groups] == [optim["lr"], optim["muon_lr"]]


def ill_conditioned(rows: int, cols: int, spread: float) -> torch.Tensor:
    """A random matrix whose singular values run from 1 down to 1 / spread."""
    u, _ = torch.linalg.qr(torch.randn(rows, rows))
    v, _ = torch.linalg.qr(torch.randn(cols, rows))
    return u @ torch.diag(torch.logspace(0, -torch.log10(torch.tensor(spread)).item(), rows)) @ v.T


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_a_kernels_step_is_its_gradient_orthogonalised(layout):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, 3, bias=False).to(memory_format=layout)
    grad = ill_conditioned(16, 8 * 9, spread=20.0)
    conv.weight.grad = grad.view_as(conv.weight).contiguous(memory_format=layout)
    before = conv.weight.detach().clone()
    MuonSGD(conv.parameters(), lr=0.1, muon_lr=0.01, momentum=0.9).step()
    update = (before - conv.weight.detach()).flatten(1) / 0.01  # out < in*k*k: no lr adjustment
    singular = torch.linalg.svdvals(update)
    assert singular.min() > 0.4 and singular.max() < 1.6, singular  # Newton-Schulz's near-equal spectrum
    assert torch.cosine_similarity(update.flatten(), grad.flatten(), dim=0) > 0.5  # still downhill


def test_loss_falls_over_a_few_steps_and_the_state_reloads_weights_only():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 36, 3),
    )
    images, labels = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    optimizer = MuonSGD(net.parameters(), lr=0.05, muon_lr=0.02, momentum=0.9, weight_decay=5e-4)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)
    saved.seek(0)
    again = MuonSGD(net.parameters(), lr=0.05, muon_lr=0.02)
    again.load_state_dict(torch.load(saved, weights_only=True))
    assert again.param_groups[MUON_GROUP]["muon"] and torch.equal(
        again.state[net[0].weight]["momentum_buffer"], optimizer.state[net[0].weight]["momentum_buffer"]
    )


@pytest.mark.parametrize("setting", ["lr", "muon_lr", "weight_decay", "muon_weight_decay"])
def test_a_negative_setting_is_a_value_error(setting):
    settings = {"lr": 0.1, "muon_lr": 0.01, setting: -1.0}
    with pytest.raises(ValueError, match=f"^{setting}=-1.0 must be >= 0"):
        MuonSGD(torch.nn.Conv2d(1, 2, 3).parameters(), **settings)


def test_a_bad_muon_lr_is_refused_in_one_line(earlier_run, mnist_root):
    line = preflight_refusal("optim=muon_onecycle", "optim.muon_lr=-1", run_dir=earlier_run, data_dir=mnist_root)
    assert line == "invalid optimizer settings in optim: muon_lr=-1 must be >= 0 (fix the optim.* override)"


@pytest.mark.slow  # a real training run
def test_a_short_run_trains_and_its_checkpoint_loads_weights_only(make_cfg, tmp_path):
    train(make_cfg(*SHORT_RUN, "optim=muon_onecycle", "trainer.limit_train_batches=3"))
    assert json.loads((tmp_path / "results.json").read_text())["epochs"] == 1
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    (state,) = checkpoint["optimizer_states"]
    assert [group["muon"] for group in state["param_groups"]] == [False, True]
    Classifier.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow  # a run.py process that trains (seconds), as a user runs it
def test_run_py_trains_with_muon(mnist_root, tmp_path):
    result = run_cli("optim=muon_onecycle", *SHORT_RUN, data_dir=mnist_root, run_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "results.json").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
