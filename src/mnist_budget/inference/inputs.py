"""The user's image files that ``task=predict`` reads: a file, a folder's images or a glob's matches.

No torch: the command line finds them (or refuses ``input=``) before a run starts.
"""

from __future__ import annotations

import glob
from pathlib import Path

from mnist_budget.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}


def find_inputs(spec: str) -> list[Path]:
    """The files an ``input=`` names: one file, a folder's image files (sorted) or a glob's matches."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        # Not is_file(): a broken link or an unreadable entry is listed with its reason, not left out.
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        if not files:
            raise UserError(
                f"input={spec} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}): point input at images"
            )
        return files
    if glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise UserError(f"input={spec} matches no files: check the pattern (quote it so the shell leaves it alone)")
        return files
    raise UserError(f"input={spec} does not exist: give an image file, a folder of images or a quoted glob")
