"""The datamodule on MNIST-format files: splits, determinism, augmentation, and bad data."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.datasets import MNIST

from conftest import write_mnist
from mnist_budget.data.datamodule import EpochBatches, MNISTDataModule
from mnist_budget.data.loading import load_mnist
from mnist_budget.errors import UserError
from mnist_budget.training.module import Classifier

PROJECTION = torch.randn(28 * 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def rows(dataset) -> set[tuple[float, int]]:
    """Each (image, label) as a fingerprint: equal images give equal fingerprints (a random
    projection of the pixels, in float64), so a shared row cannot hide; 50x faster than bytes."""
    images, labels = dataset.tensors
    fingerprints = images.flatten(1).double() @ PROJECTION
    return set(zip(fingerprints.tolist(), labels.tolist(), strict=True))


@pytest.mark.parametrize("val_size,train_size", [(10_000, 50_000), (50, 59_950)])
def test_splits_are_sized_disjoint_and_deterministic(mnist_root, val_size, train_size):
    first = MNISTDataModule(str(mnist_root), val_size=val_size, download=False)
    first.setup()
    train, val, test = (first.splits[name] for name in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (train_size, val_size, 10_000)

    raw = MNIST(str(mnist_root), train=True)
    all_images = raw.data.unsqueeze(1).float() / 255
    # Every training image is in exactly one split: the sizes add up and none is shared.
    assert len(train) + len(val) == len(all_images)
    assert not rows(val) & rows(train)

    second = MNISTDataModule(str(mnist_root), val_size=val_size, download=False)
    second.setup()
    assert torch.equal(second.splits["val"].tensors[0], val.tensors[0])
    assert torch.equal(second.splits["train"].tensors[1], train.tensors[1])

    kept = first.splits
    first.setup("fit")  # a second setup keeps the split it has
    assert first.splits is kept


def test_test_split_is_the_official_test_set(mnist_root):
    datamodule = MNISTDataModule(str(mnist_root), download=False)
    datamodule.setup()
    official = MNIST(str(mnist_root), train=False)
    images, labels = datamodule.splits["test"].tensors
    assert torch.equal(labels, official.targets)
    assert torch.equal((images[:, 0] * 255).round().to(torch.uint8), official.data)


def test_a_different_split_seed_gives_a_different_split(mnist_root):
    a = MNISTDataModule(str(mnist_root), val_size=50, split_seed=1, download=False)
    b = MNISTDataModule(str(mnist_root), val_size=50, split_seed=2, download=False)
    a.setup(), b.setup()
    assert not torch.equal(a.splits["val"].tensors[0], b.splits["val"].tensors[0])


def test_batches_cover_the_split_once_per_epoch(mnist_root):
    datamodule = MNISTDataModule(str(mnist_root), val_size=50, batch_size=7, eval_batch_size=20, download=False)
    datamodule.setup()
    seen = torch.cat([labels for _, labels in datamodule.val_dataloader()])
    assert torch.equal(seen, datamodule.splits["val"].tensors[1])
    sizes = [len(labels) for _, labels in datamodule.train_dataloader()]
    assert sum(sizes) == 59_950 and max(sizes) == 7


@pytest.mark.parametrize(
    ("saved", "fragment"),
    [
        ({"world_size": 2}, "trained in 2 processes, this run has 1"),
        ({"shuffle": [True, 7]}, "data.shuffle, data.shuffle_seed = [True, 7], this run has [True, 0]"),
        ({}, None),
    ],
    ids=["other-process-count", "other-shuffle", "from-before-these-were-saved"],
)
def test_a_resume_continues_the_same_batch_order_or_is_refused(mnist_root, saved, fragment):
    """The saved data position means something only for the same shuffle shared out among as many processes."""
    datamodule = MNISTDataModule(str(mnist_root), val_size=50, batch_size=512, download=False)
    datamodule.setup()
    datamodule.load_state_dict({"train_size": 59_950, "batch_size": 512, "epoch": 0, "trained_batches": 3, **saved})
    if fragment is None:
        assert len(list(datamodule.train_dataloader())) == len(datamodule.train_batches) - 3  # resumed after 3 batches
    else:
        with pytest.raises(UserError, match=re.escape(fragment)):
            datamodule.train_dataloader()


class CountingAugment(nn.Module):
    """Identity that counts the batches it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batches += 1
        return images


def test_augmentation_runs_on_training_batches_only(make_cfg, mnist_root):
    cfg = make_cfg("eval_tta=false")  # one forward pass per evaluation batch (no TTA)
    augment = CountingAugment()
    datamodule = MNISTDataModule(str(mnist_root), download=False, augment=augment, eval_batch_size=500)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        limit_test_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
    )
    module = Classifier.from_config(cfg)
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule)
    assert augment.batches == 3


def test_missing_data_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(UserError, match=r"is missing.*MNIST_BUDGET_DATA") as info:
        MNISTDataModule(str(tmp_path), download=False).setup()
    assert "\n" not in str(info.value)


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    # Nothing listens on port 9 of this machine: the download fails at once, as it does offline.
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(UserError, match=r"missing from .* download failed .*copy the four original idx files") as info:
        MNISTDataModule(str(tmp_path), download=True).prepare_data()
    assert "\n" not in str(info.value)


@pytest.fixture
def small_root(tmp_path) -> Path:
    return write_mnist(tmp_path, train_count=200, test_count=100)


def test_truncated_file_is_named(small_root):
    images = small_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte is truncated.*delete the damaged file"):
        load_mnist(small_root, train=True)


def test_corrupt_header_is_named(small_root):
    labels = small_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x00\x00" + labels.read_bytes()[4:])
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte is not an idx file"):
        load_mnist(small_root, train=False)


def test_image_and_label_counts_must_agree(small_root):
    from conftest import write_idx

    write_idx(small_root / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(150, dtype=np.uint8))
    with pytest.raises(UserError, match=r"200 images but .* 150 labels"):
        load_mnist(small_root, train=True)


def test_impossible_split_is_refused(small_root):
    with pytest.raises(UserError, match=r"data.val_size=500"):
        MNISTDataModule(str(small_root), val_size=500, download=False).setup()


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_are_disjoint_cover_the_split_and_reshuffle(world_size):
    size = 1_000
    epoch = {"now": 0}
    shards = [EpochBatches(size, 64, True, 7, lambda: epoch["now"], rank, world_size) for rank in range(world_size)]
    seen_by_epoch = []
    for now in (0, 1):
        epoch["now"] = now
        parts = [torch.cat(list(shard)) for shard in shards]
        assert len({len(shard) for shard in shards}) == 1  # every process runs the same number of steps
        together = torch.cat(parts)
        assert len(together) == len(set(together.tolist())) == size - size % world_size  # disjoint, all but the rest
        seen_by_epoch.append(parts[0])
    assert not torch.equal(seen_by_epoch[0], seen_by_epoch[1])  # a new order every epoch
    single = torch.cat(list(EpochBatches(size, 64, True, 7, lambda: 1)))
    assert sorted(single.tolist()) == list(range(size))


def test_splits_are_read_onto_the_device_as_floats_and_the_batches_index_them_there(small_root):
    datamodule = MNISTDataModule(str(small_root), val_size=50, batch_size=64, download=False)
    datamodule.load_splits("cpu")
    images, labels = datamodule.splits["train"].tensors
    assert images.dtype == torch.float32 and images.shape == (150, 1, 28, 28) and 0 <= images.min() <= images.max() <= 1
    assert datamodule.load_seconds > 0
    # A pass's order goes to the split's device once, so that no batch copies its indices there.
    batches = EpochBatches(150, 64, True, 7, lambda: 0, device="meta")
    assert [(batch.device.type, len(batch)) for batch in batches] == [("meta", 64), ("meta", 64), ("meta", 22)]
