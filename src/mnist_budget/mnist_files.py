"""What MNIST is: the four original idx files, their checks, the normalisation constants, and the
data module's valid arguments.

Light on purpose (no Lightning, no torchvision): the command line checks the data settings and
files before a run starts (mnist_budget.preflight) with the same functions that the data module
(mnist_budget.data) calls, and every task uses the same constants.
"""

from __future__ import annotations

import math
from pathlib import Path

from mnist_budget.errors import UserError

# Mean and standard deviation of the official training images, scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
TRAIN_SIZE = 60_000

# (file name, dimensions after the count): what a well-formed idx file of each kind holds.
IDX_FILES = {
    "train-images-idx3-ubyte": (28, 28),
    "train-labels-idx1-ubyte": (),
    "t10k-images-idx3-ubyte": (28, 28),
    "t10k-labels-idx1-ubyte": (),
}


def idx_file_problem(path: Path) -> str | None:
    """Say what is wrong with one MNIST idx file, or ``None`` if its header and size agree.

    torchvision parses the files; this only names *which* file is damaged and how, so that the
    error a user sees points at the file to replace.
    """
    if not path.is_file():
        return "is missing"
    dims = IDX_FILES[path.name]
    header_size = 4 * (2 + len(dims))
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(header_size)
    if len(header) < header_size:
        return f"is truncated ({size} bytes, shorter than its {header_size}-byte header)"
    magic = int.from_bytes(header[:4], "big")
    if magic != 0x0800 + 1 + len(dims):
        return f"is not an idx file of unsigned bytes (magic number {magic:#x})"
    shape = [int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in range(1, 2 + len(dims))]
    if tuple(shape[1:]) != dims:
        return f"has item shape {tuple(shape[1:])}, expected {dims}"
    expected = header_size + shape[0] * math.prod(dims)
    if size != expected:
        return f"is truncated or padded ({size} bytes, its header promises {expected})"
    return None


def check_mnist_files(raw: Path, names: tuple[str, ...] = tuple(IDX_FILES), download: bool = False) -> None:
    """Refuse damaged idx files, and missing ones unless the run may ``download`` them, in one line."""
    problems = {name: idx_file_problem(raw / name) for name in names}
    if download:
        problems = {name: problem for name, problem in problems.items() if problem != "is missing"}
    bad = {name: problem for name, problem in problems.items() if problem}
    if not bad:
        return
    where = "point MNIST_BUDGET_DATA (or paths.data_dir=...) at a folder that holds MNIST/raw/"
    if all(problem == "is missing" for problem in bad.values()) and len(bad) == len(names):
        raise UserError(
            f"MNIST is missing from {raw} and data.download=false: copy the original idx files "
            f"({', '.join(names)}) there, {where}, or allow data.download=true"
        )
    listed = "; ".join(f"{raw / name} {problem}" for name, problem in bad.items())
    raise UserError(
        f"{listed}: delete the damaged file and run again with data.download=true to fetch it, "
        f"or copy the original idx files into {raw}, or {where}"
    )


def check_data_arguments(batch_size: int, eval_batch_size: int, val_size: int, total: int = TRAIN_SIZE) -> None:
    """The data module's arguments: batch sizes of at least 1, and a validation split that leaves
    training images (``total``: the training images there are)."""
    for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if not is_positive_int(value):
            raise UserError(f"data.{key}={value!r} is invalid: it must be a positive integer")
    check_val_size(val_size, total)


def check_val_size(val_size: int, total: int) -> None:
    """A validation split must leave training images: 1 to ``total - 1`` of the ``total`` there are."""
    if not (is_positive_int(val_size) and val_size < total):
        raise UserError(f"data.val_size={val_size!r} is invalid: it must be an integer from 1 to {total - 1}")


def is_positive_int(value: object) -> bool:
    """An int of at least 1 (a bool is not a number of images)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def normalise(images):  # noqa: ANN001, ANN201 - a tensor (or array) of [0, 1] images, same type back
    """The training normalisation, used by training, evaluation, prediction and export alike."""
    return (images - MNIST_MEAN) / MNIST_STD
