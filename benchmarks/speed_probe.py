"""``SpeedProbe``: a callback that times a fit's parts on a clock read after a CUDA synchronisation.

A module of its own, importing nothing of the other benchmarks, so that ``run.py`` can load it into a real
run (``+callbacks.speed_probe._target_=speed_probe.SpeedProbe`` with benchmarks/ on PYTHONPATH) as
well as benchmarks/gpu_speedrun.py. The GPU is waited for only at the few moments the clock is
read (around the first steps, at each epoch's last batch, evaluation's start and end), never at every step,
which would remove the overlap of Python with the GPU's work that a real run has.

What it writes (``figures()``; into ``path``, by default ``speed.json`` in the trainer's folder):
- ``load_s``: the data module's ``load_seconds``, reading every split onto the device;
- ``first_step_s``: the first training step, which holds what happens once (torch.compile's
  compilation, CUDA graph capture, cuDNN's autotuning, the first kernels' loading);
- ``train_s``: from the first training step's start to the last one's end, less the validation
  passes between epochs (Lightning's own work between steps and epochs included), and
  ``after_first_s`` the same without the first step; ``steady_images_per_s``: the images of the
  steps after the first ``warmup`` over their time, measured the same way;
- ``val_s``, ``test_s``: validation passes (the sanity check's included) and testing;
- ``fit_s``: the whole of ``trainer.fit`` from its start hook to its end hook.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from mnist_budget.files import write_atomically


def synchronized_clock() -> float:
    """The wall clock once the GPU (if any) has finished what was queued."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


class SpeedProbe(Callback):
    """Times a fit's data loading, first step, training steps, evaluation and testing (see the module).

    ``warmup``: the steps before ``steady_images_per_s`` starts counting."""

    def __init__(self, path: str | None = None, warmup: int = 1) -> None:
        self.path = Path(path) if path else None
        self.warmup = max(1, int(warmup))
        self.device = "cpu"
        self.load_s: float | None = None
        self.first_step_s: float | None = None
        self.val_s = self.test_s = 0.0
        self.steps = self.images = self.steady_images = 0
        # Clock readings, and the validation seconds so far at each: fit_start, first_start,
        # steady_start, last_end (the latest epoch's last batch), fit_end.
        self.marks: dict[str, tuple[float, float]] = {}
        self._eval_start = 0.0

    def mark(self, name: str) -> float:
        now = synchronized_clock()
        self.marks[name] = (now, self.val_s)
        return now

    def span(self, start: str, end: str) -> float | None:
        """Seconds from mark ``start`` to mark ``end``, less the validation between them."""
        if start not in self.marks or end not in self.marks:
            return None
        (t0, v0), (t1, v1) = self.marks[start], self.marks[end]
        return (t1 - t0) - (v1 - v0)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.device = trainer.strategy.root_device.type
        self.load_s = getattr(getattr(trainer, "datamodule", None), "load_seconds", None)
        self.mark("fit_start")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.steps == 0:
            self.mark("first_start")
        if self.steps == self.warmup:
            self.mark("steady_start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        self.images += len(batch[1])
        if self.steps > self.warmup:
            self.steady_images += len(batch[1])
        if self.steps == 1:
            self.first_step_s = synchronized_clock() - self.marks["first_start"][0]
        if batch_idx == trainer.num_training_batches - 1:  # an epoch's last batch, before its validation
            self.mark("last_end")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._eval_start = synchronized_clock()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.val_s += synchronized_clock() - self._eval_start

    def on_fit_end(self, trainer, pl_module) -> None:
        self.mark("fit_end")
        self.write(trainer)

    def on_test_start(self, trainer, pl_module) -> None:
        self._eval_start = synchronized_clock()

    def on_test_end(self, trainer, pl_module) -> None:
        self.test_s += synchronized_clock() - self._eval_start
        self.write(trainer)

    def figures(self) -> dict[str, Any]:
        """The times in seconds (see the module), the steps and images trained, the device."""
        train_s = self.span("first_start", "last_end")
        steady_s = self.span("steady_start", "last_end")
        fit = self.marks.get("fit_end", (None,))[0]
        return {
            "device": self.device,
            "steps": self.steps,
            "images": self.images,
            "load_s": self.load_s,
            "first_step_s": self.first_step_s,
            "train_s": train_s,
            "after_first_s": train_s - self.first_step_s if train_s is not None and self.first_step_s else None,
            "steady_images_per_s": self.steady_images / steady_s if steady_s and self.steady_images else None,
            "val_s": self.val_s,
            "test_s": self.test_s,
            "fit_s": fit - self.marks["fit_start"][0] if fit is not None else None,
        }

    def write(self, trainer) -> None:
        """``figures()`` as JSON into ``path`` (rank 0 only)."""
        if trainer.is_global_zero:
            path = self.path or Path(trainer.default_root_dir) / "speed.json"
            write_atomically(path, json.dumps(self.figures(), indent=2) + "\n")
