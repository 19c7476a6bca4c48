"""A run stopped by a signal: saved at a step's end, and the one line that says how to resume it."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnist_budget.checkpoints import last_checkpoint_path, load_checkpoint
from mnist_budget.errors import Interrupted
from mnist_budget.training.callbacks.checkpointing import LastCheckpoint

log = logging.getLogger(__name__)


class Interruption(Callback):
    """SIGTERM (SLURM pre-emption, ``timeout``, ``docker stop``, ``kill``), Ctrl-C, or a
    scheduler's warning signal (SIGUSR1/SIGUSR2 where a handler waits for it, as submitit's does
    under ``hydra/launcher=slurm``): save ``last.ckpt`` at the end of the training step in
    progress, then stop (the task raises ``Interrupted`` with the line to print). A warning signal
    is then handed to the handler that waited for it (submitit requeues the job, which resumes with
    ``ckpt_path=auto``).

    Lightning stops at a step's end on SIGTERM by itself; the first Ctrl-C is made to do the same
    (it is noted, the step finishes, then Lightning's KeyboardInterrupt path runs). Both signals
    are ignored while the checkpoint is written, and the write is atomic
    (``AtomicCheckpointIO``), so a second Ctrl-C cannot corrupt it. A second Ctrl-C before the
    step ends, or one outside training (validation, test), stops at once: then ``last.ckpt`` is the
    last periodic save. A scheduler's warning never stops at once: it leaves time, so the run stops
    after the next training step (after a validation in progress, too).

    A stop asked for in an epoch's last step waits for the epoch's end: a checkpoint between that
    step and the epoch's validation would resume by skipping both (see ``LastCheckpoint``). The
    epoch validates and saves as usual and the run stops as the next epoch starts, from that save;
    in the run's very last step there is nothing left to resume, and the run ends normally.
    """

    WARNINGS = (signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.requested: signal.Signals | None = None  # the signal that asked for a stop at the step's end
        self.stopped: dict[str, Any] | None = None
        self.at_epoch_end = False  # the stop came in an epoch's last step: LastCheckpoint's save at its end is the one
        self._previous: dict[int, Any] = {}  # signal -> the handler it had before training

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python lets only the main thread set signal handlers
        self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal(trainer))
        for sig in self.WARNINGS:
            if callable(signal.getsignal(sig)):  # someone (a scheduler's client) waits for it
                self._previous[sig] = signal.signal(sig, self._on_signal(trainer))

    def _on_signal(self, trainer: L.Trainer) -> Any:
        def handler(signum: int, frame: Any) -> None:
            if signum in self.WARNINGS and not self.requested:
                # A scheduler's warning leaves time: wait for a training step's end, also when it
                # comes during a validation (a requeued job would otherwise lose that epoch).
                self.requested = signal.Signals(signum)
                log.info("%s: stopping after the next training step to save it", self.requested.name)
                return
            if self.requested or not trainer.training:
                raise KeyboardInterrupt  # at once: no clean step end to wait for
            self.requested = signal.Signals(signum)
            log.info("%s: stopping after this training step (Ctrl-C again stops at once)", self.requested.name)

        return handler

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.requested:
            return
        if batch_idx + 1 < trainer.num_training_batches:
            raise KeyboardInterrupt
        self.at_epoch_end = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_epoch_end:
            raise KeyboardInterrupt

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_epoch_end:
            log.info(
                "%s came in the run's last step: nothing is left to resume, so the run ends normally",
                self.requested.name,
            )
        self._restore_handler()

    def _restore_handler(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        forward = self._previous.get(self.requested) if self.requested in self.WARNINGS else None
        self._restore_handler()
        clean = isinstance(exception, SIGTERMException) or (isinstance(exception, KeyboardInterrupt) and self.requested)
        if not (clean or isinstance(exception, KeyboardInterrupt)):
            return  # an error, not an interruption
        name = "SIGTERM" if isinstance(exception, SIGTERMException) else (self.requested or signal.SIGINT).name
        path = last_checkpoint_of(trainer)
        if (
            clean
            and self.at_epoch_end
            and path.is_file()
            and load_checkpoint(path)["global_step"] == trainer.global_step
        ):
            step = trainer.global_step  # LastCheckpoint saved it as the epoch ended
        elif clean:
            held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                trainer.save_checkpoint(path)
            finally:
                for sig, handler in held.items():
                    signal.signal(sig, handler)
            step = trainer.global_step
        else:
            step = int(load_checkpoint(path)["global_step"]) if path.is_file() else None
        epoch = trainer.current_epoch + (0 if self.at_epoch_end else 1)  # at an epoch's end: the one that ended
        self.stopped = {
            "signal": name,
            "epoch": epoch,
            "step": step,
            "checkpoint": str(path) if step is not None else None,
            "saved_now": bool(clean),
        }
        if callable(forward):
            forward(self.requested, None)  # the scheduler's own handler: submitit requeues the job here


def last_checkpoint_of(trainer: L.Trainer) -> Path:
    """The file the run's ``LastCheckpoint`` rewrites; without one, the run folder's
    (``trainer.default_root_dir`` is the run folder: conf/trainer/default.yaml)."""
    paths = [cb.path for cb in trainer.checkpoint_callbacks if isinstance(cb, LastCheckpoint) and cb.path]
    return paths[0] if paths else last_checkpoint_path(Path(trainer.default_root_dir))


def python_command() -> list[str]:
    """How the user ran Python, so that the resume line works as printed: ``uv run python`` under
    ``uv run`` (which sets ``UV``), else this interpreter's own path (a bare ``python`` may be
    another one, outside the project's environment)."""
    return ["uv", "run", "python"] if os.environ.get("UV") else [sys.executable]


def interruption_message(stopped: dict[str, Any], run_dir: Path, overrides: list[str]) -> Interrupted:
    """The one line for a run that ``Interruption`` stopped, with the command that resumes it."""
    keep = [o for o in overrides if not o.lstrip("+~").startswith(("ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir="))]
    command = shlex.join([*python_command(), "run.py", *keep, "ckpt_path=last", f"hydra.run.dir={run_dir}"])
    number = signal.Signals[stopped["signal"]]
    if stopped["checkpoint"] is None:
        where = "no checkpoint had been written yet: run the command again from the start"
        return Interrupted(f"interrupted by {stopped['signal']} in epoch {stopped['epoch']}; {where}", 128 + number)
    saved = "saved" if stopped["saved_now"] else "the last periodic save"
    where = f"interrupted by {stopped['signal']} in epoch {stopped['epoch']}, {saved} at step {stopped['step']} in {stopped['checkpoint']}"
    return Interrupted(f"{where}; resume with: {command}", 128 + number, where)
