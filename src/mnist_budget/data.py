"""MNIST (or another idx data set: ``mnist_files.DATASETS``) as in-memory tensors, served in
batches by index.

torchvision reads (and, where it can, downloads) the original idx files once; every split then
lives as one float tensor on the training device, and a batch is a single indexing operation:
no per-sample PIL transforms and no worker processes. Augmentation runs afterwards on whole
batches, on the device (``on_after_batch_transfer``), for training batches only.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchvision.datasets
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from mnist_budget.errors import UserError, first_line
from mnist_budget.font_digits import FontDigits, check_data_set
from mnist_budget.mnist_files import (
    IDX_FILES,
    check_data_arguments,
    check_mnist_files,
    check_val_size,
    find_dataset,
    normalise,
    raw_folder,
    unpack_gzipped,
)


def download_mnist(root: Path, name: str = "mnist") -> None:
    """Download a data set (MNIST unless ``name`` says otherwise) into ``root/<folder>/raw`` unless
    it is already there (gzipped originals copied there count: they are unpacked).

    torchvision prints each failed mirror to stdout; that noise is captured and folded into one
    error that says what to do instead.
    """
    spec, raw = find_dataset(name), raw_folder(root, name)
    unpack_gzipped(raw)
    if all((raw / file).is_file() for file in IDX_FILES):
        return
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            # download() fetches all four files; train=False then loads only the small test set.
            getattr(torchvision.datasets, spec.folder)(str(root), train=False, download=True)
    except (RuntimeError, OSError) as err:
        raise UserError(
            f"{spec.folder} is missing from {raw} and the download failed ({first_line(err)}): copy the four original "
            f"idx files ({', '.join(IDX_FILES)}, or the same with .gz; from {spec.source}) into {raw}, or point "
            f"MNIST_BUDGET_DATA (or paths.data_dir=...) at a folder that holds {spec.folder}/raw/"
        ) from err


def load_mnist(root: Path, train: bool, name: str = "mnist") -> tuple[torch.Tensor, torch.Tensor]:
    """Read one official set of a data set (MNIST unless ``name`` says otherwise) with torchvision:
    uint8 images (N, 28, 28) and int64 labels."""
    raw = raw_folder(root, name)
    prefix = "train" if train else "t10k"
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    check_mnist_files(raw, names, name=name)
    data = getattr(torchvision.datasets, find_dataset(name).folder)(str(root), train=train, download=False)
    if len(data.data) != len(data.targets):
        raise UserError(
            f"{raw / names[0]} holds {len(data.data)} images but {raw / names[1]} holds "
            f"{len(data.targets)} labels: replace both with the original files"
        )
    return data.data, data.targets


def split_indices(total: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, disjoint train/validation split of ``range(total)`` that depends only on ``seed``."""
    check_val_size(val_size, total)  # files smaller than MNIST's own (tests) have fewer than 60,000
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]; normalisation waits until after augmentation."""
    return images.unsqueeze(1).float().div_(255.0)


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
        self, size: int, batch_size: int, shuffle: bool, seed: int, epoch: Callable[[], int], rank: int = 0,
        world_size: int = 1,
    ) -> None:  # fmt: skip
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.epoch = epoch  # asked when a pass starts: the trainer's current epoch
        self.rank, self.world_size = rank, world_size
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
        order = self.order(epoch)
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

    ``dataset``: which idx data set (``mnist_budget.mnist_files.DATASETS``: mnist, fashion_mnist);
    its own normalisation constants are applied. ``extra_train``: more digits for the training
    split only (``mnist_budget.font_digits.FontDigits``, ``extra_train=fonts``); validation and
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
            check_data_set(self.spec.name)
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
        self.train_batches: EpochBatches | None = None
        self.resume_state: dict[str, Any] | None = None

    def prepare_data(self) -> None:
        if self.download:
            download_mnist(self.root, self.spec.name)
        if self.extra_train is not None:  # fonts fetched and digits drawn once, by one process
            self.extra_train.prepare(self.root)

    def setup(self, stage: str | None = None) -> None:
        """Load every split once; later calls keep the same tensors (and the same split)."""
        if self.splits:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
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
            splits["train"] = (torch.cat([splits["train"][0], extra_images]), torch.cat([splits["train"][1], extra_labels]))
        for name, (x, y) in splits.items():
            self.splits[name] = TensorDataset(to_float_images(x).to(device), y.to(device))

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _batches(self, split: str, batch_size: int, shuffle: bool, seed: int) -> EpochBatches:
        """The split's batches for this process (its shard under DDP; Lightning's own sampler is off)."""
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        return EpochBatches(len(self.splits[split]), batch_size, shuffle, seed, self._current_epoch, rank, world)

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

        (The random generators are restored by ``mnist_budget.resume.RandomState``.)
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
