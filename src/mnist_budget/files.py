"""Writing a file whole or not at all: the one way this project writes what a reader may trust.

Every writer (results.json, failure.json, sweep summaries, checkpoints, unpacked data files,
fonts, drawn-digit caches, exported models' JSON) stages the file beside its target and renames
it into place: ``os.replace`` is atomic within a folder, so a run killed while writing leaves the
previous file whole, and a reader never sees half a file. A full or read-only disk is one
``UserError`` line naming the file; the staging file is removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from mnist_budget.errors import UserError, first_line


@contextmanager
def atomic_write(path: str | Path, what: str = "") -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new contents into; on leaving the block it replaces
    ``path`` (flushed to disk first). An error in the block leaves ``path`` as it was; an
    ``OSError`` becomes one line (``what``: how the message names the file, say "the checkpoint ").
    The target's folder is made if missing."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with staging.open("wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(staging, path)
    except OSError as err:
        kept = f" (the previous {path.name}, if any, is unchanged)" if what else ""
        raise UserError(
            f"could not write {what}{path} ({err.strerror or first_line(err)}): free disk space or make "
            f"{path.parent} writable{kept}"
        ) from err
    finally:
        staging.unlink(missing_ok=True)


def write_atomically(path: str | Path, content: str | bytes) -> None:
    """``path`` holds ``content`` (text as UTF-8), written whole or not at all (``atomic_write``)."""
    with atomic_write(path) as file:
        file.write(content.encode() if isinstance(content, str) else content)
