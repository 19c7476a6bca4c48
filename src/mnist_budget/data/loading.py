"""Reading an idx data set into tensors with torchvision, and downloading it where there is internet.

No Lightning: export's check on the test set (mnist_budget.inference.export) reads the test
images with the same functions as the data module (mnist_budget.data.datamodule).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
import torchvision.datasets

from mnist_budget.data.sets import IDX_FILES, check_mnist_files, find_dataset, raw_folder, unpack_gzipped
from mnist_budget.errors import UserError, first_line
from mnist_budget.rules import check_val_size


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
