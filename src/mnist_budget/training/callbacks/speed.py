"""Callbacks that change how the network runs, not what it learns: the memory layout and
torch.compile (conf/callbacks/memory_format.yaml, compile.yaml)."""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mnist_budget.hardware import compile_mode, resolve_layout

log = logging.getLogger(__name__)


class MemoryFormat(Callback):
    """Stores the network's 4-D weights (and so its activations) in the layout chosen for the device.

    ``layout``: ``channels_last`` (NHWC), ``contiguous`` (NCHW) or ``auto``, which
    ``mnist_budget.hardware.resolve_layout`` turns into channels_last on a CPU or a CUDA GPU and
    contiguous elsewhere (docs/performance.md has the measurements behind the rule).
    """

    def __init__(self, layout: str = "auto") -> None:
        self.requested = layout
        self.layout: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.layout = resolve_layout(self.requested, trainer.strategy.root_device.type)
        if self.layout == "channels_last":
            pl_module.to(memory_format=torch.channels_last)


class Compile(Callback):
    """Compiles the network with torch.compile before its first step, in place (``nn.Module.compile``:
    its parameters, their names and so checkpoints stay as they are).

    ``mode``: ``None`` (no compile), ``default`` or ``max-autotune``; ``cuda_graphs``: also capture
    CUDA graphs, which torch.compile does as its ``reduce-overhead`` mode (``max-autotune`` with
    ``max-autotune``; ``mnist_budget.hardware.compile_mode``); ``backend``: torch.compile's, where
    ``eager`` only traces (a quick check that the network compiles). Compilation happens at the
    first batch of each new shape or mode (training, evaluation), not here.
    """

    def __init__(self, mode: str | None = None, cuda_graphs: bool = False, backend: str = "inductor") -> None:
        self.mode, self.cuda_graphs, self.backend = mode, bool(cuda_graphs), backend
        self.compiled: str | None = None  # torch.compile's mode, once the network is compiled

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.compiled is not None:  # fit, then test: compiled once
            return
        mode = compile_mode(self.mode, self.cuda_graphs, trainer.strategy.root_device.type)
        if mode is None:
            return
        pl_module.net.compile(mode=mode, backend=self.backend)
        self.compiled = mode
        log.info("torch.compile: mode %s, backend %s", mode, self.backend)
