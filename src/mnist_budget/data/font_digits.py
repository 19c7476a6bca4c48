"""Digits set in handwriting fonts, as extra training images for reading other people's handwriting.

MNIST's training set is the only handwriting the project has, and its writers share one style
(plain 1s, open 4s, straight-tailed 9s, unbarred 7s). Handwriting fonts were drawn from many
people's hands and carry the styles MNIST lacks: flagged 1s, barred 7s, closed 4s, curled 9s.
``FontDigits`` draws 0-9 in each font with a random size, width, slant, rotation and pen (and, for
a share of them, through a coarse 8x8 scan: a 32x32 bitmap counted in 4x4 blocks, as the
low-resolution scanners of older digit sets did), then passes each image through
``mnist_style``, the path every picture takes in ``task=predict`` and ``task=serve``, so that the
training images look like what the network will be given. The data module appends them to the
training split only: validation and test stay MNIST's own.

The fonts are Google Fonts' handwriting faces as the npm registry distributes them (``@fontsource``
packages, SIL Open Font License), downloaded once into ``<data_dir>/fonts/`` (only each
package's regular latin font is kept); any ``.ttf``, ``.otf``
or ``.woff`` file put there is drawn with too. The drawn digits are cached next to the fonts (a
``.npz`` file named by a hash of everything that shapes them).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import re
import tarfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnist_budget.data.preprocess import ImageProblem, mnist_style
from mnist_budget.errors import UserError, first_line
from mnist_budget.files import atomic_write, write_atomically

FONTSOURCE = "https://registry.npmjs.org/@fontsource/{family}/-/{family}-{version}.tgz"
FONT_SUFFIXES = (".ttf", ".otf", ".woff")
LATIN_WOFF = re.compile(r"/[a-z0-9-]+-latin-(\d+)-normal\.woff$")  # not latin-ext, which has no digits
RENDERER = 1  # bump when the drawing below changes, so that old caches are not reused
CANVAS = 128  # pixels a side for drawing one digit
RESAMPLING = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def download_font(folder: Path, family: str, version: str) -> Path:
    """Fetch one @fontsource package from the npm registry and keep only its regular latin .woff."""
    url = FONTSOURCE.format(family=family, version=version)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            archive = tarfile.open(fileobj=io.BytesIO(response.read()), mode="r:gz")  # noqa: SIM115 - closed by "with archive" below, outside the download's error handling
    except (OSError, http.client.HTTPException, tarfile.TarError, EOFError) as err:
        raise UserError(
            f"font {family!r} is missing from {folder} and its download failed ({first_line(err)}, {url}): put .ttf, "
            f".otf or .woff handwriting fonts into {folder} and drop the missing names from data.extra_train.families, "
            "or train without font digits (data.extra_train=null)"
        ) from err
    with archive:
        weights = {int(m.group(1)): n for n in archive.getnames() if (m := LATIN_WOFF.search(n))}
        if not weights:
            raise UserError(f"{url} holds no latin .woff font: drop {family!r} from data.extra_train.families")
        regular = weights[min(weights, key=lambda weight: abs(weight - 400))]  # the weight nearest 400
        member = archive.extractfile(regular)
        if member is None:  # a link or a folder by that name, not a file
            raise UserError(f"{url} holds no font file at {regular}: drop {family!r} from data.extra_train.families")
        target = folder / f"{family}.woff"
        write_atomically(target, member.read())  # an interrupted download leaves no half a font behind
    return target


class FontDigits:
    """``copies`` drawings of each digit in every font; ``low_res_p`` of them through a coarse 8x8
    scan; ``seed`` fixes every drawing. ``load(data_dir)`` returns uint8 images (N, 28, 28) and
    int64 labels, ready to append to MNIST's training images."""

    def __init__(
        self,
        families: Sequence[str] = (),
        version: str = "5.3.0",
        copies: int = 8,
        low_res_p: float = 0.5,
        seed: int = 0,
        download: bool = True,
    ) -> None:
        if not isinstance(copies, int) or copies < 1 or not 0 <= low_res_p <= 1:
            raise UserError(
                f"data.extra_train copies={copies}, low_res_p={low_res_p}: copies must be a whole number >= 1 "
                "and low_res_p a share in [0, 1]"
            )
        self.families = list(families)
        self.version = version
        self.copies = copies
        self.low_res_p = float(low_res_p)
        self.seed = seed
        self.download = download

    def check_fonts(self, data_dir: Path) -> None:
        """Refuse now (the preflight calls this too) a named family that is missing and may not be downloaded."""
        folder = Path(data_dir) / "fonts"
        missing = [family for family in self.families if not (folder / f"{family}.woff").is_file()]
        if missing and not self.download:
            raise UserError(
                f"font {missing[0]!r} is missing from {folder} ({len(missing)} of {len(self.families)} missing): allow "
                "data.extra_train.download=true, or put the font files there, or drop the names from data.extra_train.families"
            )

    def font_files(self, data_dir: Path) -> list[Path]:
        """Every font file in ``<data_dir>/fonts``, after downloading the named families missing there."""
        self.check_fonts(data_dir)
        folder = Path(data_dir) / "fonts"
        folder.mkdir(parents=True, exist_ok=True)
        for family in self.families:
            if not (folder / f"{family}.woff").is_file():
                download_font(folder, family, self.version)
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in FONT_SUFFIXES)

    def cache_path(self, data_dir: Path, fonts: Sequence[Path]) -> Path:
        """Named by what shapes the drawing: each font's name and bytes, the settings, the renderer."""
        contents = [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in fonts]
        key = repr((RENDERER, contents, self.copies, self.low_res_p, self.seed))
        return Path(data_dir) / "fonts" / f"digits-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"

    def prepare(self, data_dir: Path) -> Path:
        """Download the fonts and draw the digits unless a cache of the same drawing exists."""
        fonts = self.font_files(data_dir)
        if not fonts:
            raise UserError(
                f"no fonts to draw digits with in {Path(data_dir) / 'fonts'}: name data.extra_train.families or put font files there"
            )
        cache = self.cache_path(data_dir, fonts)
        if not cache.is_file():
            images, labels = render(fonts, self.copies, self.low_res_p, self.seed)
            with atomic_write(cache) as file:  # whole or not at all: an interrupted drawing leaves no cache
                np.savez(file, images=images, labels=labels)
        return cache

    def load(self, data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.prepare(data_dir)
        try:
            return read_cache(cache)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # a damaged cache: draw the digits again, once
            cache.unlink()
            return read_cache(self.prepare(data_dir))


def read_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path, allow_pickle=False) as cached:
        return torch.from_numpy(cached["images"]), torch.from_numpy(cached["labels"]).long()


def render(fonts: Sequence[Path], copies: int, low_res_p: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw 0-9 ``copies`` times in each font; a digit the font lacks, or a drawing that leaves no
    ink (a hairline font thinned away), is skipped."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for path in fonts:
        missing = missing_digits(path)
        for _ in range(copies):
            font = open_font(path, int(rng.integers(48, 80)))
            for digit in range(10):
                if str(digit) in missing:
                    continue
                try:
                    image = mnist_style(draw(font, str(digit), rng, low_res_p))
                except ImageProblem:
                    continue
                images.append(np.uint8(np.round(image[0].numpy() * 255)))
                labels.append(digit)
    return np.stack(images), np.array(labels, dtype=np.int64)


def open_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(str(path), size)
    except OSError as err:
        raise UserError(f"font file {path} cannot be read ({first_line(err)}): delete or replace it") from err


def missing_digits(path: Path) -> set[str]:
    """The digits a font draws as its missing-glyph box (as it draws a code point no font has)."""
    font = open_font(path, 40)

    def pixels(text: str) -> bytes:
        image = Image.new("L", (80, 80))
        ImageDraw.Draw(image).text((10, 10), text, fill=255, font=font)
        return image.tobytes()

    missing = pixels("\U0010fffd")
    return {digit for digit in "0123456789" if pixels(digit) == missing}


def draw(font: ImageFont.FreeTypeFont, text: str, rng: np.random.Generator, low_res_p: float) -> Image.Image:
    """One digit, dark on white: a random width (0.8-1.2x), slant (shear +-0.25), rotation (+-10 deg)
    and pen (as drawn, 1 px thinner, or 1 or 2 px thicker); with probability ``low_res_p``,
    through a coarse scan."""
    image = Image.new("L", (CANVAS, CANVAS), 255)
    ImageDraw.Draw(image).text((CANVAS / 2, CANVAS / 2), text, fill=0, font=font, anchor="mm")
    shear, width = float(rng.uniform(-0.25, 0.25)), float(rng.uniform(0.8, 1.2))
    offset = -shear * CANVAS / 2 + (1 - 1 / width) * CANVAS / 2  # keep the centre where it is
    image = image.transform(
        image.size, Image.Transform.AFFINE, (1 / width, shear, offset, 0, 1, 0), Image.Resampling.BICUBIC, fillcolor=255
    )
    image = image.rotate(float(rng.uniform(-10, 10)), Image.Resampling.BICUBIC, fillcolor=255)
    pen = int(rng.integers(0, 4))
    if pen:  # white paper: a max-filter thins the dark ink, a min-filter thickens it
        image = image.filter(ImageFilter.MaxFilter(3) if pen == 1 else ImageFilter.MinFilter(2 * pen - 1))
    if rng.random() < low_res_p:
        image = coarse_scan(image, rng) or image
    return image


def coarse_scan(image: Image.Image, rng: np.random.Generator) -> Image.Image | None:
    """The digit's ink box fitted into a 32x32 bitmap (aspect kept), counted in 4x4 blocks into 8x8
    levels of 0-16 and enlarged again (60-200 px, a random resampling): strokes turn thick and
    blocky, and small loops close. None when too little ink survives the bitmap."""
    ink = 255 - np.asarray(image)
    rows, cols = np.nonzero(ink > 128)
    if not len(rows):
        return None
    box = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = 32 / max(box.shape)
    fitted = np.asarray(
        Image.fromarray(box).resize(
            (max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale))), Image.Resampling.BILINEAR
        )
    )
    bitmap = np.zeros((32, 32), dtype=bool)
    top, left = (32 - fitted.shape[0]) // 2, (32 - fitted.shape[1]) // 2
    bitmap[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted > 80
    if bitmap.sum() < 80:
        return None
    counts = bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3))
    size = int(rng.integers(60, 200))
    return Image.fromarray(np.uint8(255 - counts * 255 // 16)).resize((size, size), RESAMPLING[int(rng.integers(0, 4))])
