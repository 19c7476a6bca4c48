"""What MNIST-format data sets are: the four original idx files and their checks, each set's
normalisation constants and class names, and where its download comes from.

Light on purpose (no torch): the command line checks the data files before a run starts
(mnist_budget.tasks.preflight) with the same functions that the loader (mnist_budget.data.loading)
calls, and every task uses the same constants.
"""

from __future__ import annotations

import gzip
import math
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mnist_budget.errors import UserError, first_line
from mnist_budget.files import atomic_write

Pixels = TypeVar("Pixels")  # a torch tensor or a numpy array: normalised, the same type comes back

# Mean and standard deviation of the official training images, scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


@dataclass(frozen=True)
class DataSet:
    """One idx data set of 28x28 grey images in 10 classes, as torchvision reads it."""

    name: str  # the data.dataset value
    folder: str  # torchvision's class of the same name reads data_dir/<folder>/raw/
    mean: float  # of the official training images in [0, 1] (the normalisation)
    std: float
    classes: tuple[str, ...]
    source: str  # where to get the files when the download cannot run
    download_host: str  # the host torchvision downloads the files from first (checked before a run)

    @property
    def background(self) -> float:
        """A blank (0) pixel after normalisation: what a shifted, normalised image fills in with."""
        return -self.mean / self.std


DATASETS = {
    "mnist": DataSet(
        "mnist",
        "MNIST",
        MNIST_MEAN,
        MNIST_STD,
        tuple(str(d) for d in range(10)),
        "http://yann.lecun.com/exdb/mnist/",
        "ossci-datasets.s3.amazonaws.com",
    ),
    # Constants measured on the official training files (60,000 images).
    "fashion_mnist": DataSet(
        "fashion_mnist",
        "FashionMNIST",
        0.2860,
        0.3530,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "https://github.com/zalandoresearch/fashion-mnist, or Debian's package dataset-fashion-mnist "
        "(/usr/share/datasets/fashion-mnist/*.gz)",
        "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    ),
}


def find_dataset(name: str) -> DataSet:
    """The data set a ``data.dataset`` value (or a checkpoint's) names, or a one-line refusal."""
    if name not in DATASETS:
        raise UserError(f"data.dataset={name!r} is unknown: use one of {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_name(cfg: Any) -> str:
    """The data set a run config reads (``data.dataset``; configs from before it existed read MNIST)."""
    return str(cfg.data.get("dataset", "mnist"))


def raw_folder(data_dir: str | Path, name: str = "mnist") -> Path:
    """Where the data set's four idx files live: ``data_dir/<folder>/raw`` (torchvision's layout)."""
    return Path(data_dir).expanduser() / find_dataset(name).folder / "raw"


def unpack_gzipped(raw: Path) -> None:
    """The files as they are distributed (``<name>.gz``, Debian's package ships them so) are
    unpacked beside themselves once, so that copying the four .gz files is enough. (The check
    before a run does it, so that it checks the unpacked files; it is written once.)"""
    for name in IDX_FILES:
        packed = raw / f"{name}.gz"
        if (raw / name).exists() or not packed.is_file():
            continue
        with atomic_write(raw / name) as target, gzip.open(packed, "rb") as source:
            while chunk := read_packed(source, packed):
                target.write(chunk)


def read_packed(source: gzip.GzipFile, packed: Path, size: int = 1 << 20) -> bytes:
    """The next ``size`` bytes of a gzipped file; a damaged one is refused in one line."""
    try:
        return source.read(size)
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{packed} cannot be unpacked ({first_line(err)}): replace it with the original file") from err


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


def check_mnist_files(
    raw: Path, names: tuple[str, ...] = tuple(IDX_FILES), download: bool = False, name: str = "mnist"
) -> None:
    """Refuse damaged idx files, and missing ones unless the run may ``download`` them, in one line
    (``name``: the data set, for the message). Gzipped originals are unpacked first."""
    unpack_gzipped(raw)
    problems = all_problems = {file: idx_file_problem(raw / file) for file in names}
    if download:
        problems = {name: problem for name, problem in problems.items() if problem != "is missing"}
    bad = {name: problem for name, problem in problems.items() if problem}
    spec = find_dataset(name)
    where = f"point MNIST_BUDGET_DATA (or paths.data_dir=...) at a folder that holds {spec.folder}/raw/"
    missing = [file for file, problem in all_problems.items() if problem == "is missing"]
    if download and missing:
        unreachable = download_problem(spec.download_host)
        if unreachable:
            raise UserError(
                f"{spec.folder} is missing from {raw} and cannot be downloaded ({spec.download_host}: {unreachable}): "
                f"copy the original idx files ({', '.join(names)}, or the same with .gz; from {spec.source}) there, "
                f"or {where}"
            )
    if not bad:
        return
    if all(problem == "is missing" for problem in bad.values()) and len(bad) == len(names):
        raise UserError(
            f"{spec.folder} is missing from {raw} and data.download=false: copy the original idx files "
            f"({', '.join(names)}, or the same with .gz; from {spec.source}) there, {where}, or allow data.download=true"
        )
    listed = "; ".join(f"{raw / name} {problem}" for name, problem in bad.items())
    raise UserError(
        f"{listed}: delete the damaged file and run again with data.download=true to fetch it, "
        f"or copy the original idx files into {raw}, or {where}"
    )


def download_problem(host: str, timeout: float = 3.0) -> str | None:
    """Why ``host`` cannot be reached on HTTPS (no name resolution, no route), or ``None``: a machine
    without internet is told before the run starts, not after its imports and set-up."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return None
    except OSError as err:
        return first_line(err)


def normalise(images: Pixels, data: DataSet = DATASETS["mnist"]) -> Pixels:
    """The training normalisation of ``data`` (MNIST's unless told), used by training, evaluation,
    prediction and export alike."""
    return (images - data.mean) / data.std
