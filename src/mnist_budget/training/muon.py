"""Muon for the convolutions' weights and Nesterov SGD for every other parameter, in one optimiser.

Why a class of our own: ``torch.optim.Muon`` refuses any parameter that is not 2-D, and a conv
kernel is 4-D (out, in, kh, kw). Its functional step (``torch.optim._muon.muon``: momentum, the
Newton-Schulz orthogonalisation, the shape's lr adjustment, decoupled weight decay) works on any
matrix, so this class hands it each kernel seen as the (out, in*kh*kw) matrix, as Keller Jordan's
Muon does for convolutions (https://kellerjordan.github.io/posts/muon/; airbench and
modded-nanogpt flatten conv filters the same way). SGD's own functional step
(``torch.optim.sgd.sgd``) steps the rest. One optimiser with two parameter groups lets one
learning-rate schedule drive both (OneCycleLR takes one ``max_lr`` per group).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.sgd import sgd

SGD_GROUP, MUON_GROUP = 0, 1  # the groups' order, which a per-group schedule setting follows


def is_conv_kernel(parameter: torch.Tensor) -> bool:
    """A Conv2d weight (out, in, kh, kw): the only 4-D parameters these networks have."""
    return parameter.ndim == 4


class MuonSGD(torch.optim.Optimizer):
    """Nesterov SGD on every parameter but the conv kernels (group 0, ``lr``), Muon on the kernels
    (group 1, ``muon_lr``): a convolutional head included, BatchNorm, biases and Linear layers not.

    Both groups always exist (one may be empty), so a per-group schedule setting has two entries.
    SGD's ``weight_decay`` is the usual L2 term added to the gradient; Muon's is decoupled, as in
    ``torch.optim.Muon``: each step shrinks the kernels by ``muon_lr * muon_weight_decay``.
    Newton-Schulz runs in bfloat16, as torch's Muon does on every device (the CPU included).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        muon_lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        muon_weight_decay: float = 0.0,
        ns_steps: int = 5,
    ) -> None:
        settings = {"lr": lr, "muon_lr": muon_lr, "weight_decay": weight_decay, "muon_weight_decay": muon_weight_decay}
        for name, value in settings.items():
            if not value >= 0:  # also refuses NaN
                raise ValueError(f"{name}={value} must be >= 0")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum} must be in [0, 1)")
        params = list(params)
        kernels = [p for p in params if is_conv_kernel(p)]
        groups = [
            {"params": [p for p in params if not is_conv_kernel(p)], "muon": False},
            {"params": kernels, "muon": True, "lr": muon_lr, "weight_decay": muon_weight_decay},
        ]
        # "momentum" among the defaults: OneCycleLR cycles it (cycle_momentum) in both groups.
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": True,
            "ns_steps": ns_steps,
        }
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of both groups; ``closure`` (Lightning passes one) computes the gradients first."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon_step if group["muon"] else self._sgd_step)(group, params)
        return loss

    def _sgd_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        buffers = [self.state[p].get("momentum_buffer") for p in params]
        sgd(
            params,
            [p.grad for p in params],
            buffers,
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            lr=group["lr"],
            dampening=0.0,
            nesterov=group["nesterov"],
            maximize=False,
        )
        for p, buffer in zip(params, buffers, strict=True):
            if buffer is not None:  # sgd creates the buffers on the first step (none without momentum)
                self.state[p]["momentum_buffer"] = buffer

    def _muon_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        # Imported here: torch.optim.Muon came with torch 2.9, and only this choice needs it.
        from torch.optim._muon import DEFAULT_A, DEFAULT_B, DEFAULT_C, EPS, muon

        # A view of the kernel when its memory is (out, in, kh, kw) in order; a copy, written back
        # below, when it is channels_last (mnist_budget.training.callbacks.speed on CPUs and GPUs).
        matrices = [p.flatten(1) for p in params]
        buffers = [self._muon_buffer(p, matrix) for p, matrix in zip(params, matrices, strict=True)]
        muon(
            matrices,
            [p.grad.flatten(1) for p in params],
            buffers,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            nesterov=group["nesterov"],
            ns_coefficients=(DEFAULT_A, DEFAULT_B, DEFAULT_C),
            eps=EPS,
            ns_steps=group["ns_steps"],
            adjust_lr_fn=None,  # torch's default: Keller Jordan's sqrt(max(1, out / (in*kh*kw)))
            has_complex=False,
        )
        for p, matrix in zip(params, matrices, strict=True):
            if matrix.data_ptr() != p.data_ptr():
                p.copy_(matrix.view_as(p))

    def _muon_buffer(self, param: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """The kernel's momentum, kept as its (out, in*kh*kw) matrix whatever the kernel's layout."""
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(matrix, memory_format=torch.contiguous_format)
        return state["momentum_buffer"]
