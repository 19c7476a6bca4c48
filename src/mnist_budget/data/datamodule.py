"""MNIST (or another idx data set: ``mnist_budget.data.sets.DATASETS``) as in-memory tensors, served in
batches by index.

torchvision reads (and, where it can, downloads) the original idx files once; every split then
lives as one float tensor on the training device (copied there as uint8, made float there), and a
batch is a single indexing operation: no per-sample PIL transforms and no worker processes.
Augmentation runs afterwards on whole batches, on the device (``on_after_batch_transfer``), for
training batches only.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from mnist_budget.data.font_digits import FontDigits
from mnist_budget.data.loading import download_mnist, load_mnist, split_indices, to_float_images
from mnist_budget.data.sets import find_dataset, normalise
from mnist_budget.errors import UserError
from mnist_budget.rules import check_data_arguments, check_extra_train_data_set


class EpochBatches(Sampler[torch.Tensor]):
    """Index batches of one pass over a split per epoch: shuffled by ``(seed, epoch)`` alone, or in order.

    The order is a pure function of the seed and the epoch, never of the global random generator,
    so however often Lightning restarts the iterator (it does so when a run resumes), an epoch's
    batches are the same; ``resume_at`` (an epoch and the batches already trained in it) makes
    that epoch's passes skip the batches done before a checkpoint.

    Under DDP each of ``world_size`` processes takes every ``world_size``-th image of the same
    order, starting at its ``rank``: disjoint shards that together cover the split once per epoch
    (less the last ``size % world_size`` images of that epoch's order, so that every process runs
    the same number of steps), reshuffled every epoch.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        epoch: Callable[[], int],
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.epoch = epoch  # asked when a pass starts: the trainer's current epoch
        self.rank, self.world_size = rank, world_size
        # Where the split lives. Indexing a GPU tensor with CPU indices copies them over and waits
        # for the GPU at every batch; the pass's order is copied once instead.
        self.device = torch.device(device)
        self.trained = 0  # batches of the current pass that reached the model (the owner counts them)
        self.resume_at: tuple[int, int] | None = None

    @property
    def shard_size(self) -> int:
        return self.size // self.world_size

    def __len__(self) -> int:
        return math.ceil(self.shard_size / self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """This process's indices for ``epoch``, in the order it trains on them."""
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        else:
            order = torch.arange(self.size)
        return order[: self.shard_size * self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[torch.Tensor]:
        epoch = self.epoch()
        resume_epoch, resume_batches = self.resume_at or (None, 0)
        start = resume_batches if epoch == resume_epoch else 0
        self.trained = start
        order = self.order(epoch).to(self.device)
        for first in range(start * self.batch_size, len(order), self.batch_size):
            yield order[first : first + self.batch_size]


def index_loader(dataset: TensorDataset, batches: EpochBatches) -> DataLoader:
    """A loader that hands out whole batches by tensor indexing, and never draws from the global generator.

    ``batch_size=None``: the sampler yields index tensors and the dataset answers each with one
    indexing call (no per-sample work, no collation). ``generator``: torch's DataLoader draws a
    seed for its workers whenever an iterator starts; from its own generator, that draw leaves the
    global one (augmentation, dropout) untouched, so resuming cannot shift it.
    """
    return DataLoader(dataset, batch_size=None, sampler=batches, generator=torch.Generator().manual_seed(0))


class MNISTDataModule(L.LightningDataModule):
    """Official training set split into train/validation; official test set for testing only.

    ``dataset``: which idx data set (``mnist_budget.data.sets.DATASETS``: mnist, fashion_mnist);
    its own normalisation constants are applied. ``extra_train``: more digits for the training
    split only (``mnist_budget.data.font_digits.FontDigits``, ``extra_train=fonts``); validation and
    test stay the data set's own."""

    def __init__(
        self,
        data_dir: str = "./data",
        dataset: str = "mnist",
        val_size: int = 10_000,
        split_seed: int = 12345,
        batch_size: int = 128,
        eval_batch_size: int = 2_000,
        download: bool = True,
        shuffle: bool = True,
        shuffle_seed: int = 0,
        augment: nn.Module | None = None,
        extra_train: FontDigits | None = None,
    ) -> None:
        super().__init__()
        check_data_arguments(batch_size, eval_batch_size, val_size)
        self.spec = find_dataset(dataset)
        if extra_train is not None:
            check_extra_train_data_set(self.spec.name)
        self.root = Path(os.path.expanduser(data_dir))
        self.val_size = val_size
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.download = download
        self.shuffle = shuffle
        self.shuffle_seed = shuffle_seed
        self.augment = augment
        self.extra_train = extra_train
        self.splits: dict[str, TensorDataset] = {}
        self.load_seconds: float | None = None  # reading the splits onto the device (load_splits)
        self.train_batches: EpochBatches | None = None
        self.resume_state: dict[str, Any] | None = None

    def prepare_data(self) -> None:
        if self.download:
            download_mnist(self.root, self.spec.name)
        if self.extra_train is not None:  # fonts fetched and digits drawn once, by one process
            self.extra_train.prepare(self.root)

    def setup(self, stage: str | None = None) -> None:
        """Load every split once, onto the trainer's device; later calls keep the same tensors (and the same split)."""
        if self.splits:
            return
        self.load_splits(self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu"))

    def load_splits(self, device: torch.device | str) -> None:
        """Read the idx files and put every split on ``device`` as one tensor: the images travel as
        uint8 (a quarter of float32's bytes) and become floats in [0, 1] there. ``load_seconds``:
        the time it took, the copies to a GPU finished."""
        start = time.perf_counter()
        images, labels = load_mnist(self.root, train=True, name=self.spec.name)
        train_idx, val_idx = split_indices(len(images), self.val_size, self.split_seed)
        test_images, test_labels = load_mnist(self.root, train=False, name=self.spec.name)
        splits = {
            "train": (images[train_idx], labels[train_idx]),
            "val": (images[val_idx], labels[val_idx]),
            "test": (test_images, test_labels),
        }
        if self.extra_train is not None:
            extra_images, extra_labels = self.extra_train.load(self.root)
            splits["train"] = (
                torch.cat([splits["train"][0], extra_images]),
                torch.cat([splits["train"][1], extra_labels]),
            )
        for name, (x, y) in splits.items():
            self.splits[name] = TensorDataset(to_float_images(x.to(device)), y.to(device))
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        self.load_seconds = time.perf_counter() - start

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _batches(self, split: str, batch_size: int, shuffle: bool, seed: int) -> EpochBatches:
        """The split's batches for this process (its shard under DDP; Lightning's own sampler is off)."""
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        dataset = self.splits[split]
        device = dataset.tensors[0].device
        return EpochBatches(len(dataset), batch_size, shuffle, seed, self._current_epoch, rank, world, device)

    def _loader(self, split: str, batch_size: int) -> DataLoader:
        return index_loader(self.splits[split], self._batches(split, batch_size, shuffle=False, seed=0))

    def train_dataloader(self) -> DataLoader:
        dataset = self.splits["train"]
        self.train_batches = self._batches("train", self.batch_size, self.shuffle, self.shuffle_seed)
        if self.resume_state is not None:
            self._resume(self.resume_state)
            self.resume_state = None
        return index_loader(dataset, self.train_batches)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size)

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the data, for an exact resume (Lightning stores it in each checkpoint)."""
        if self.train_batches is None or self.trainer is None:
            return {}
        return {
            "train_size": len(self.splits["train"]),
            "batch_size": self.batch_size,
            "world_size": self.trainer.world_size,  # the processes that share out each epoch (DDP)
            "shuffle": [self.shuffle, self.shuffle_seed],
            "epoch": self.trainer.current_epoch,
            "trained_batches": self.train_batches.trained,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's data position until the training loader is built.

        (The random generators are restored by ``mnist_budget.training.callbacks.RandomState``.)
        """
        self.resume_state = dict(state_dict) or None

    def _resume(self, state: dict[str, Any]) -> None:
        size = len(self.splits["train"])
        if (state["train_size"], state["batch_size"]) != (size, self.batch_size):
            raise UserError(
                f"the checkpoint was trained with {state['train_size']} training images in batches of "
                f"{state['batch_size']}, this run has {size} in batches of {self.batch_size}: resume with "
                "the data.* settings of the run that wrote it"
            )
        # (Checkpoints from before these were saved have neither: they resume as before.)
        world = self.trainer.world_size if self.trainer is not None else 1
        if state.get("world_size", world) != world:
            raise UserError(
                f"the checkpoint was trained in {state['world_size']} processes, this run has {world}: each epoch's "
                "batches are shared out among them, so resume with the trainer settings of the run that wrote it"
            )
        shuffle = [self.shuffle, self.shuffle_seed]
        if list(state.get("shuffle", shuffle)) != shuffle:
            raise UserError(
                f"the checkpoint was trained with data.shuffle, data.shuffle_seed = {state['shuffle']}, this run has "
                f"{shuffle}: resume with the data.* settings of the run that wrote it"
            )
        # Saved at an epoch's end, the next epoch has another number and starts from its beginning.
        self.train_batches.resume_at = (state["epoch"], state["trained_batches"])

    def on_after_batch_transfer(
        self, batch: list[torch.Tensor] | torch.Tensor, dataloader_idx: int
    ) -> tuple[torch.Tensor, ...] | torch.Tensor:
        """Augment training batches on the device, then normalise every batch."""
        if isinstance(batch, torch.Tensor):  # images alone: the model summary's example input
            return batch
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        if training and self.train_batches is not None:
            # Counted here, as the model receives it: Lightning fetches a batch ahead of training.
            self.train_batches.trained += 1
        return self.prepare_images(images, augment=training), labels

    def prepare_images(self, images: torch.Tensor, augment: bool) -> torch.Tensor:
        """Augment (training batches only) and normalise a batch of [0, 1] images on its device."""
        if augment and self.augment is not None:
            images = self.augment(images)
        return normalise(images, self.spec)
