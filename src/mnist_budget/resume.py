"""Exact resume: a killed run continues from ``checkpoints/last.ckpt`` and ends as if never stopped.

What a checkpoint must hold for that, and who restores it:
- the weights, optimiser, scheduler, loop counters and callback states: Lightning itself;
- ``last.ckpt`` often enough, written atomically: ``LastCheckpoint`` here, with
  mnist_budget.checkpoint_io.AtomicCheckpointIO;
- the random generators (augmentation, dropout): ``RandomState`` here;
- the position in the epoch's data order: the data module's own state (mnist_budget.data,
  ``MNISTDataModule.state_dict``); each epoch's order is a pure function of (seed, epoch);
- the epoch metrics' running sums: persistent torchmetrics (mnist_budget.module);
- a run stopped by SIGTERM or Ctrl-C: ``Interruption`` here saves ``last.ckpt`` at the step it
  stopped after, and the task reports the command that resumes it;
- TensorBoard without the steps the killed run logged after its checkpoint: ``purge_step``
  (mnist_budget.builders.build_loggers, from ``resume_from``'s step).

Lightning has no public API for the save after each validation that ``LastCheckpoint`` adds to
ModelCheckpoint's step and time triggers; the private members it calls are listed in
``LIGHTNING_PRIVATE`` (tests/test_resume.py fails when Lightning moves one).
"""

from __future__ import annotations

import logging
import shlex
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from mnist_budget.checkpoints import load_checkpoint
from mnist_budget.errors import Interrupted, UserError
from mnist_budget.mnist_files import dataset_name

log = logging.getLogger(__name__)

# The private Lightning members this module relies on (checked by tests/test_resume.py).
LIGHTNING_PRIVATE = (
    (ModelCheckpoint, "_should_skip_saving_checkpoint"),
    (ModelCheckpoint, "_save_last_checkpoint"),
    (ModelCheckpoint, "_monitor_candidates"),
)


def resolve_checkpoint_path(ckpt_path: str, output_dir: Path) -> Path | None:
    """``last`` means this run folder's ``checkpoints/last.ckpt`` (resuming in place); ``auto`` the
    same if it exists, else a fresh start (``None``: a job that a scheduler requeued resumes, a
    new one starts); a path is itself."""
    if ckpt_path not in ("last", "auto"):
        return Path(ckpt_path)
    path = output_dir / "checkpoints" / "last.ckpt"
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
    saved_dataset = saved.get("dataset", "mnist")  # checkpoints from before data sets had names learnt MNIST
    for group, was, current in (("model", saved.get("model"), model), ("optim", saved.get("optim"), optim), ("data.dataset", saved_dataset, dataset)):
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
    path, checkpoint = checkpoint_to_resume(str(cfg.ckpt_path), Path(cfg.paths.output_dir), model, optim, dataset_name(cfg))
    if path is None:
        return None, None
    log.info("resuming %s (epoch %d, step %d)", path, checkpoint["epoch"] + 1, checkpoint["global_step"])
    return str(path), int(checkpoint["global_step"])


class LastCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt``, rewritten after every validation and every few steps or seconds between.

    The one file a killed run resumes from (``ckpt_path=last``). Lightning's ModelCheckpoint with
    ``save_last`` and a step or time trigger, plus a save after each validation (Lightning allows
    only one trigger per callback), minus the step save on an epoch's last batch: the save after
    validation follows at once, and a checkpoint taken between the two would resume without that
    epoch's validation.
    """

    def __init__(
        self, *args: Any, every_n_train_steps: int | None = None, train_time_interval: Any = None, **kwargs: Any
    ) -> None:
        # Lightning refuses both triggers at once; a step count given on the command line wins.
        if every_n_train_steps:
            train_time_interval = None
        super().__init__(
            *args, every_n_train_steps=every_n_train_steps, train_time_interval=train_time_interval, **kwargs
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx + 1 == trainer.num_training_batches:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RandomState(Callback):
    """Saves the random generators in every checkpoint and restores them when training resumes.

    Restored in ``on_train_start``: the training loader has then been set up (torch's DataLoader
    draws a number whenever it starts an iterator, and a resumed run starts one an uninterrupted
    run does not), and nothing that shapes training (shuffling, augmentation, dropout) has drawn.
    A run resumed mid-epoch continues that epoch's iterator; one resumed at an epoch's end starts
    the next epoch's iterator after this hook, as an uninterrupted run does after its save.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = dict(state_dict)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pending:
            restore_rng(self.pending)
            self.pending = None


def capture_rng() -> dict[str, Any]:
    """The generators' states as tensors (safe to load with ``weights_only=True``)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put the generators back to ``state`` (CUDA only where this machine has the same GPUs)."""
    torch.set_rng_state(state["cpu"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


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
    (mnist_budget.checkpoint_io), so a second Ctrl-C cannot corrupt it. A second Ctrl-C before the
    step ends, or one outside training (validation, test), stops at once: then ``last.ckpt`` is the
    last periodic save.

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
            if self.requested or not trainer.training:
                raise KeyboardInterrupt  # at once: no clean step end to wait for
            self.requested = signal.Signals(signum)
            log.info("%s: stopping after this training step (Ctrl-C again stops at once)", self.requested.name)

        return handler

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
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
            log.info("%s came in the run's last step: nothing is left to resume, so the run ends normally", self.requested.name)
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
        folders = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, LastCheckpoint) and cb.dirpath]
        path = Path(folders[0] if folders else Path(trainer.default_root_dir) / "checkpoints") / "last.ckpt"
        if clean and self.at_epoch_end and path.is_file() and load_checkpoint(path)["global_step"] == trainer.global_step:
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
        self.stopped = {"signal": name, "epoch": epoch, "step": step,
                        "checkpoint": str(path) if step is not None else None, "saved_now": bool(clean)}  # fmt: skip
        if callable(forward):
            forward(self.requested, None)  # the scheduler's own handler: submitit requeues the job here


def interruption_message(stopped: dict[str, Any], run_dir: Path, overrides: list[str]) -> Interrupted:
    """The one line for a run that ``Interruption`` stopped, with the command that resumes it."""
    keep = [o for o in overrides if not o.lstrip("+~").startswith(("ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir="))]
    command = shlex.join(["python", "run.py", *keep, "ckpt_path=last", f"hydra.run.dir={run_dir}"])
    number = signal.Signals[stopped["signal"]]
    if stopped["checkpoint"] is None:
        where = "no checkpoint had been written yet: run the command again from the start"
        return Interrupted(f"interrupted by {stopped['signal']} in epoch {stopped['epoch']}; {where}", 128 + number)
    saved = "saved" if stopped["saved_now"] else "the last periodic save"
    return Interrupted(
        f"interrupted by {stopped['signal']} in epoch {stopped['epoch']}, {saved} at step {stopped['step']} in "
        f"{stopped['checkpoint']}; resume with: {command}",
        128 + number,
    )
