"""The four original MNIST idx files: their names, normalisation constants, and checks of each file.

Light on purpose (no Lightning, no torchvision): the command line checks the data files before a
run starts (mnist_budget.preflight), and every task uses the same constants.
"""

from __future__ import annotations

import math
from pathlib import Path

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


def normalise(images):  # noqa: ANN001, ANN201 - a tensor (or array) of [0, 1] images, same type back
    """The training normalisation, used by training, evaluation, prediction and export alike."""
    return (images - MNIST_MEAN) / MNIST_STD
