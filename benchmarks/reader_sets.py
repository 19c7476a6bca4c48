"""How a checkpoint reads digits however they were written and scanned: per digit, through predict's path.

Each digit is dressed as a file a user would have (dark ink on light paper, the digit 64-128 px
with a margin, off-centre, uneven light, PNG; ``predict_quality.on_paper``) and read exactly as
``task=predict`` reads a file (``read_digit``: ``load_image`` -> ``mnist_style``; then
``Predictor``). The sets:

- **mnist-test**: MNIST's official test digits (never trained on), enlarged as they are;
- **mnist-test-box**: the same digits, each one's ink bounding box stretched to fill a square,
  ignoring its aspect ratio, as some scanners and older data sets normalise both axes (a 1
  becomes a wide slanted bar, a 0 a full circle). ``mnist_style`` keeps a digit's aspect ratio,
  so this asks whether a model still reads digits whose shape was normalised that way;
- **mnist-val-box**: the same stretching of the project's *validation* split (``data.val_size``
  images of the training files, chosen by ``data.split_seed`` with ``loading.split_indices``, as
  every run splits them). This is the set for *choosing* a recipe or a preprocessing: choices
  are never made on the test sets above, which only report. (A checkpoint of a run that kept
  another split, e.g. ``data=mnist_59950``, trained on most of these: its figure here is not
  held out);
- **uci** and **uci-box**: the UCI "optical recognition of handwritten digits" test set as
  scikit-learn ships it (``sklearn.datasets.load_digits``: 1,797 digits of 43 writers, 8x8 pixels
  of 0-16), real handwriting from outside MNIST, kept outside the repository so that nothing is
  tuned on it; each 8x8 digit enlarged with a smooth (bicubic) filter, once as it is and once
  stretched to fill a square as in mnist-test-box. Make the file once (scikit-learn is not a
  project dependency; ``data/`` is git-ignored):
  ``uv run --with scikit-learn python benchmarks/uci_digits.py data/uci_digits.npz``.

    uv run python benchmarks/reader_sets.py CKPT [CKPT ...] [--uci data/uci_digits.npz] [--count N] [--tta] [--keep DIR] [--smoke]

Prints accuracy in % per digit and overall, one column per set and checkpoint (and ``+TTA``,
predict's test-time augmentation, with ``--tta``), and the images per set. ``--count``: images of
each MNIST set (default: all 10,000; a fixed, seeded choice, the same digits in mnist-test and
mnist-test-box). A fixed seed makes every image the same on every run. A file predict cannot read
(no ink found) counts as wrong, and is counted. ``--smoke``: 20 images per set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import SMOKE_HELP, data_dir, device_note, mnist_network, project_config
from handwriting_styles import column_names
from mnist_budget.checkpoints import dataset_of
from mnist_budget.data.loading import load_mnist, split_indices
from mnist_budget.data.preprocess import ImageProblem, read_digit
from mnist_budget.inference.classify import Predictor
from predict_quality import encoded, on_paper

SEED = 0
SMOKE_COUNT = 20
UCI_HOW = "uv run --with scikit-learn python benchmarks/uci_digits.py data/uci_digits.npz"


def ink_map(pixels: np.ndarray, side: int, box: bool) -> Image.Image:
    """White ink on black, ``side`` x ``side``, enlarged with a bicubic filter: the whole field as
    it is, or (``box``) the ink's bounding box stretched to fill the square, whatever its aspect
    ratio. ``pixels``: uint8, 0 = no ink."""
    pad = 2  # blank all round: the enlarged edges fade out as ink does instead of repeating
    image = Image.fromarray(np.pad(pixels, pad))
    height, width = pixels.shape
    region = (pad, pad, pad + width, pad + height)
    if box and pixels.any():  # a blank digit stays as it is
        mask = pixels > 0.1 * pixels.max()
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        region = (pad + cols[0], pad + rows[0], pad + cols[-1] + 1, pad + rows[-1] + 1)
    return image.resize((side, side), Image.Resampling.BICUBIC, box=region)


def dressed(pixels: np.ndarray, box: bool, rng: np.random.Generator) -> bytes:
    """A PNG a user would have: the digit 64-128 px, a margin of 15-40 % of it on each side, then
    laid off-centre on a bigger sheet of light paper in dark ink (``on_paper``)."""
    side = int(rng.integers(64, 129))
    margin = int(side * rng.uniform(0.15, 0.4))
    ink = Image.new("L", (side + 2 * margin, side + 2 * margin), 0)
    ink.paste(ink_map(pixels, side, box), (margin, margin))
    paper, pen = int(rng.integers(215, 250)), int(rng.integers(10, 60))
    return encoded(on_paper(ink, rng, (paper,), (pen,)), "PNG")


def read_set(digits: np.ndarray, box: bool, seed: int) -> tuple[torch.Tensor, list[bool], list[bytes]]:
    """Every digit dressed as a file and read as predict reads it: the 28x28 tensors (zeros for a
    file predict cannot read), whether each was readable, and the files."""
    rng = np.random.default_rng([SEED, seed])
    tensors, readable, files = [], [], []
    for pixels in digits:
        files.append(dressed(pixels, box, rng))
        try:
            tensors.append(read_digit(files[-1]))
            readable.append(True)
        except ImageProblem:
            tensors.append(torch.zeros(1, 28, 28))
            readable.append(False)
    return torch.stack(tensors), readable, files


def mnist_sets(count: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The MNIST sets' digits (uint8, N x 28 x 28) and labels: ``count`` of each, a seeded choice."""
    cfg = project_config()
    rng = np.random.default_rng(SEED)
    test_images, test_labels = load_mnist(Path(data_dir()), train=False)
    images, labels = load_mnist(Path(data_dir()), train=True)
    _, val_idx = split_indices(len(images), int(cfg.data.val_size), int(cfg.data.split_seed))
    test = rng.choice(len(test_images), size=min(count, len(test_images)), replace=False)
    val = val_idx[rng.choice(len(val_idx), size=min(count, len(val_idx)), replace=False)]
    test_set = (test_images[test].numpy(), test_labels[test].numpy())
    return {
        "mnist-test": test_set,
        "mnist-test-box": test_set,
        "mnist-val-box": (images[val].numpy(), labels[val].numpy()),
    }


def uci_digits(path: Path, count: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The UCI digits of ``path`` (``images`` N x 8 x 8 of 0-16, ``target`` N) as uint8 0-255."""
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist: make it with {UCI_HOW}")
    with np.load(path) as data:
        images, target = data["images"], data["target"]
    if images.ndim != 3 or images.shape[1:] != (8, 8) or len(images) != len(target):
        raise SystemExit(
            f"error: {path} holds images {images.shape} and target {target.shape}: remake it with {UCI_HOW}"
        )
    images = np.uint8(np.clip(np.round(np.asarray(images, np.float32) * 255 / 16), 0, 255))
    return images[:count], np.asarray(target, np.int64)[:count]


def accuracy_table(right: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> str:
    """Rows: digits 0-9, all, and the images behind each column; ``labels``: per column."""
    columns = list(right)
    lines = ["| digit | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for row in [*range(10), "all"]:
        cells = []
        for column in columns:
            chosen = right[column] if row == "all" else right[column][labels[column] == row]
            cells.append(f"{100 * chosen.float().mean():.1f}" if len(chosen) else "-")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines.append("| images | " + " | ".join(str(len(right[c])) for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT")
    parser.add_argument("--uci", type=Path, metavar="FILE.npz", help=f"the UCI digits (make it: {UCI_HOW})")
    parser.add_argument("--count", type=int, default=10_000, help="images of each MNIST set (default: all 10,000)")
    parser.add_argument(
        "--tta", action="store_true", help="also score each checkpoint with predict's test-time augmentation"
    )
    parser.add_argument("--keep", type=Path, help="write the first 20 files of each set here (default: none kept)")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_HELP}; --count {SMOKE_COUNT}, UCI too")
    args = parser.parse_args(argv)
    count = SMOKE_COUNT if args.smoke else args.count
    if count < 1:
        parser.error(f"--count must be at least 1, not {count}")
    print(device_note())
    networks = [mnist_network(checkpoint) for checkpoint in args.checkpoints]  # a wrong file fails first
    sets = mnist_sets(count)
    if args.uci is None:
        print(f"uci, uci-box: skipped (no --uci FILE.npz; make it with {UCI_HOW})")
    else:
        sets["uci"] = sets["uci-box"] = uci_digits(args.uci, SMOKE_COUNT if args.smoke else None)
    read: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for k, (name, (digits, labels)) in enumerate(sets.items()):
        tensors, readable, files = read_set(digits, name.endswith("-box"), seed=k)
        read[name] = (tensors, torch.as_tensor(labels), torch.tensor(readable))
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for n, (data, label) in enumerate(zip(files[:20], labels, strict=False)):
                (args.keep / f"{name}_{n:02d}_label{label}.png").write_bytes(data)
        unread = f"; {len(readable) - sum(readable)} unreadable (counted wrong)" if not all(readable) else ""
        print(f"{name}: {len(labels)} images, per digit {np.bincount(labels, minlength=10).tolist()}{unread}")
    shorts = column_names(args.checkpoints) if len(args.checkpoints) > 1 else [""]  # one: named once, above
    right, column_labels = {}, {}
    for name, (tensors, labels, readable) in read.items():
        for (net, hparams), short in zip(networks, shorts, strict=True):
            for tta in (False, True) if args.tta else (False,):
                column = name + (f": {short}" if short else "") + (" +TTA" if tta else "")
                probabilities = Predictor(net, dataset_of(hparams), tta=tta)(tensors)
                right[column] = (probabilities.argmax(1) == labels) & readable
                column_labels[column] = labels
    if not shorts[0]:
        print(f"checkpoint: {args.checkpoints[0]}")
    elif shorts[0].startswith("1: "):  # numbered: say which file each is
        print("columns: " + "; ".join(f"{n} = {c}" for n, c in enumerate(args.checkpoints, start=1)))
    print("\naccuracy in % per digit, read as task=predict reads a file:\n")
    print(accuracy_table(right, column_labels))


if __name__ == "__main__":
    main()
