"""``Timeline``: a callback for benchmarks/startup.py that notes the wall clock at the trainer's hooks.

A module of its own, importing nothing of the benchmarks, so that a run of any version of the
project can load it (``+callbacks.timeline._target_=timeline.Timeline`` with benchmarks/ on
PYTHONPATH).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class Timeline(Callback):
    """Notes the wall clock at the trainer's hooks into the JSON file ``path``."""

    def __init__(self, path: str) -> None:
        self.path, self.times = Path(path), {}

    def note(self, name: str, once: bool = True) -> None:
        if not (once and name in self.times):
            self.times[name] = time.time()
            self.path.write_text(json.dumps(self.times))

    def on_fit_start(self, trainer, pl_module) -> None:
        self.note("fit_start")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.note("first_step")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.note("last_step", once=False)

    def on_test_end(self, trainer, pl_module) -> None:
        self.note("test_end")
