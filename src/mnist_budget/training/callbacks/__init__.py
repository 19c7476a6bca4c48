"""Everything the project hands Lightning's Trainer besides the LightningModule, one module per
concern; Lightning's own callbacks are configured in conf/callbacks/.

Exact resume (a killed run continues from ``checkpoints/last.ckpt`` and ends as if never
stopped) takes several parts, and this is who restores what:
- the weights, optimiser, scheduler, loop counters and callback states: Lightning itself;
- ``last.ckpt`` often enough, written atomically: ``checkpointing`` (``LastCheckpoint``,
  ``AtomicCheckpointIO``);
- the random generators (augmentation, dropout): ``random_state`` (``RandomState``);
- the position in the epoch's data order: the data module's own state
  (mnist_budget.data.datamodule, ``MNISTDataModule.state_dict``); each epoch's order is a pure
  function of (seed, epoch);
- the epoch metrics' running sums: persistent torchmetrics (mnist_budget.training.module);
- the epoch table and the seconds trained so far: ``history`` (``EpochHistory``);
- a run stopped by SIGTERM or Ctrl-C: ``interruption`` (``Interruption`` saves ``last.ckpt`` at
  the step it stopped after; ``interruption_message`` is the line with the command that resumes it);
- TensorBoard without the steps the killed run logged after its checkpoint: ``purge_step``
  (mnist_budget.training.builders.build_loggers, from mnist_budget.checkpoints.resume_from).
Which checkpoint a run resumes from, and whether it fits the run: mnist_budget.checkpoints.
"""

from mnist_budget.training.callbacks.checkpointing import AtomicCheckpointIO, LastCheckpoint
from mnist_budget.training.callbacks.guards import FiniteLoss, ParameterBudget
from mnist_budget.training.callbacks.history import EpochHistory
from mnist_budget.training.callbacks.interruption import Interruption, interruption_message
from mnist_budget.training.callbacks.random_state import RandomState
from mnist_budget.training.callbacks.speed import Compile, MemoryFormat

__all__ = [
    "AtomicCheckpointIO",
    "Compile",
    "EpochHistory",
    "FiniteLoss",
    "Interruption",
    "LastCheckpoint",
    "MemoryFormat",
    "ParameterBudget",
    "RandomState",
    "interruption_message",
]
