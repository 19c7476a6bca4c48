"""Write the UCI optical digits test set, as scikit-learn ships it, to an .npz for benchmarks/reader_sets.py.

``sklearn.datasets.load_digits``: 1,797 handwritten digits of 43 writers, 8x8 pixels of 0-16 (the
UCI "optical recognition of handwritten digits" test set). scikit-learn is not a project
dependency, and the file stays outside the repository (``data/`` is git-ignored) so that nothing
is tuned on it:

    uv run --with scikit-learn python benchmarks/uci_digits.py data/uci_digits.npz
    uv run python benchmarks/reader_sets.py CKPT --uci data/uci_digits.npz

The file holds ``images`` (1797, 8, 8) uint8 of 0-16 and ``target`` (1797,) int64.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, metavar="OUT.npz")
    args = parser.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit(
            "error: scikit-learn is not installed: uv run --with scikit-learn python benchmarks/uci_digits.py OUT.npz"
        ) from None
    digits = load_digits()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=np.uint8(digits.images), target=np.int64(digits.target))
    print(f"{args.out}: {len(digits.target)} digits, 8x8 of 0-16, per digit {np.bincount(digits.target).tolist()}")


if __name__ == "__main__":
    main()
