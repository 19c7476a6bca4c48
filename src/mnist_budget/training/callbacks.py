"""Everything the project hands Lightning's Trainer besides the LightningModule: its own
callbacks and the checkpoint writer. Lightning's own callbacks are configured in conf/callbacks/.

Exact resume (a killed run continues from ``checkpoints/last.ckpt`` and ends as if never
stopped) takes several parts, and this is who restores what:
- the weights, optimiser, scheduler, loop counters and callback states: Lightning itself;
- ``last.ckpt`` often enough, written atomically: ``LastCheckpoint`` and ``AtomicCheckpointIO``;
- the random generators (augmentation, dropout): ``RandomState``;
- the position in the epoch's data order: the data module's own state
  (mnist_budget.data.datamodule, ``MNISTDataModule.state_dict``); each epoch's order is a pure
  function of (seed, epoch);
- the epoch metrics' running sums: persistent torchmetrics (mnist_budget.training.module);
- a run stopped by SIGTERM or Ctrl-C: ``Interruption`` saves ``last.ckpt`` at the step it
  stopped after, and ``interruption_message`` is the line with the command that resumes it;
- TensorBoard without the steps the killed run logged after its checkpoint: ``purge_step``
  (mnist_budget.training.builders.build_loggers, from mnist_budget.checkpoints.resume_from).
Which checkpoint a run resumes from, and whether it fits the run: mnist_budget.checkpoints.

Lightning has no public API for the save after each validation that ``LastCheckpoint`` adds to
ModelCheckpoint's step and time triggers; the private members it calls are listed in
``LIGHTNING_PRIVATE`` (tests/test_resume.py fails when Lightning moves one).
"""

from __future__ import annotations

import logging
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnist_budget.checkpoints import load_checkpoint
from mnist_budget.errors import Interrupted, UserError
from mnist_budget.files import atomic_write
from mnist_budget.hardware import compile_mode, resolve_layout
from mnist_budget.models import check_budget

log = logging.getLogger(__name__)

# The private Lightning members LastCheckpoint relies on (checked by tests/test_resume.py).
LIGHTNING_PRIVATE = (
    (ModelCheckpoint, "_should_skip_saving_checkpoint"),
    (ModelCheckpoint, "_save_last_checkpoint"),
    (ModelCheckpoint, "_monitor_candidates"),
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its target and renames it into place (mnist_budget.files).

    A run killed while saving leaves the previous ``last.ckpt`` whole; Lightning's own writer
    stages the file in the system temp folder, which is often another file system, where the final
    move is a copy that a kill can cut short. A disk that is full or read-only stops the run with
    one line naming the file (the previous one stays).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_write(path, what="the checkpoint ") as file:
            torch.save(checkpoint, file)


class ParameterBudget(Callback):
    """Counts trainable parameters before any step, logs them, and stops a model over its budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.params: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        name = getattr(pl_module, "model_name", type(pl_module.net).__name__)
        self.params = check_budget(pl_module.net, self.budget, name)
        if stage != "fit":
            return  # said once per run, before training
        log.info("model %s: %s trainable parameters (budget %s)", name, f"{self.params:,}", f"{self.budget:,}")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:  # logged once per run: not again when a run resumes
            for logger in trainer.loggers:
                logger.log_metrics({"model/params": self.params, "model/budget": self.budget}, step=0)


class FiniteLoss(Callback):
    """Stops the run at the first non-finite training loss, naming the epoch and step.

    Diverged weights only produce NaNs from then on; the checkpoints already written (the last
    good epoch's) stay as they are. Checking reads the loss back from the device, so on a GPU
    ``check_every_n_steps`` can space the checks out.
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.every = max(1, int(check_every_n_steps))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or trainer.global_step % self.every or bool(torch.isfinite(loss).all()):
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        raise UserError(
            f"the training loss became {float(loss.detach().float())} at epoch {trainer.current_epoch + 1}, "
            f"step {trainer.global_step} (learning rate {lr:.3g}): lower optim.lr or check optim.* "
            "(checkpoints written before this epoch are kept)"
        )


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


class EpochHistory(Callback):
    """Records one row of metrics per epoch (for results.json and the plot) and prints it as a table."""

    METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self._epoch_start = 0.0
        self._validated_epoch = -1  # the last epoch whose validation ran (trainer.check_val_every_n_epoch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()  # a resumed run starts timing mid-epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs the epoch's validation before this hook, so val/* are this epoch's; in an
        # epoch without validation they would be an earlier epoch's, and are left out.
        metrics = trainer.callback_metrics
        validated = self._validated_epoch == trainer.current_epoch
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1}
        row.update(
            {
                key: float(metrics[key])
                for key in self.METRICS
                if key in metrics and (validated or not key.startswith("val/"))
            }
        )
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        row["seconds"] = time.perf_counter() - self._epoch_start
        self.history.append(row)
        if len(self.history) == 1:
            log.info("epoch | train loss  acc    | val loss  acc    | lr       | seconds")
        val = f"{row['val/loss']:8.4f} {100 * row['val/acc']:6.2f}%" if "val/acc" in row else f"{'-':>8s} {'-':>7s}"
        log.info(
            "%5d | %10.4f %6.2f%% | %s | %.2e | %6.1f",
            row["epoch"],
            row.get("train/loss", float("nan")),
            100 * row.get("train/acc", float("nan")),
            val,
            row["lr"] or float("nan"),
            row["seconds"],
        )

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}  # plain floats: resumable and weights_only-safe

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


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
    (mnist_budget.training.callbacks), so a second Ctrl-C cannot corrupt it. A second Ctrl-C before the
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
        folders = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, LastCheckpoint) and cb.dirpath]
        path = Path(folders[0] if folders else Path(trainer.default_root_dir) / "checkpoints") / "last.ckpt"
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


def interruption_message(stopped: dict[str, Any], run_dir: Path, overrides: list[str]) -> Interrupted:
    """The one line for a run that ``Interruption`` stopped, with the command that resumes it."""
    keep = [o for o in overrides if not o.lstrip("+~").startswith(("ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir="))]
    command = shlex.join(["python", "run.py", *keep, "ckpt_path=last", f"hydra.run.dir={run_dir}"])
    number = signal.Signals[stopped["signal"]]
    if stopped["checkpoint"] is None:
        where = "no checkpoint had been written yet: run the command again from the start"
        return Interrupted(f"interrupted by {stopped['signal']} in epoch {stopped['epoch']}; {where}", 128 + number)
    saved = "saved" if stopped["saved_now"] else "the last periodic save"
    where = f"interrupted by {stopped['signal']} in epoch {stopped['epoch']}, {saved} at step {stopped['step']} in {stopped['checkpoint']}"
    return Interrupted(f"{where}; resume with: {command}", 128 + number, where)
