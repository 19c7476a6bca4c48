"""Any picture of one digit -> what the networks were trained on, the way MNIST itself was made.

MNIST's digits are white ink on black, their longer side scaled to 20 pixels (keeping the aspect
ratio, anti-aliased) and placed in a 28x28 field so that their centre of mass sits in the middle.
``mnist_style`` does the same to a photo or a scan: grayscale, ink made bright (inverted when it
is dark on light paper), the paper's level removed, cropped to the ink, strokes thickened when the
pen was much thinner than MNIST's, scaled and centred. Every task that reads a user's images
(predict, serve, the quality benchmarks) uses ``read_digit``; the network then sees them through
mnist_budget.inference.classify, which normalises them as it learnt.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_budget.errors import first_line

FIELD = 28  # output size
BOX = 20  # the longer side of the digit inside the field
MNIST_STROKE = 2.5  # typical MNIST stroke width in pixels of the 20-pixel box
MIN_CONTRAST = 0.08  # ink and paper closer than this (on a 0..1 scale) means no ink
WORKING_SIZE = 1024  # the longest side an image is reduced to while loading: a 20-pixel digit needs no more


class ImageProblem(ValueError):
    """An input that cannot be turned into a digit; the message is the reason, for the predictions file."""


def load_image(source: Path | bytes) -> Image.Image:
    """Open any image Pillow can read (a file, or the bytes of one as a server receives them):
    fully decoded (so a truncated file fails here, not later), turned upright by its EXIF
    orientation, its first frame if animated, and no larger than ``WORKING_SIZE`` a side (a JPEG
    is decoded at 1/2 to 1/8 scale directly, anything else reduced after decoding), so that memory
    stays bounded however big the picture.

    Pillow's decompression-bomb guard (an image that declares far more pixels than it could hold,
    ``Image.MAX_IMAGE_PIXELS``) refuses a file here, like any other unreadable one, with its reason.
    """
    try:
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        if size == 0:
            raise ImageProblem("empty file (0 bytes)")
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.draft(None, (WORKING_SIZE, WORKING_SIZE))  # JPEG only: decode at a reduced scale
            image.load()
            image = ImageOps.exif_transpose(image)  # photos from phones carry their rotation in EXIF
            factor = -(-max(image.size) // WORKING_SIZE)  # rounded up: at most WORKING_SIZE a side
            return reducible(image).reduce(factor) if factor > 1 else image
    except ImageProblem:
        raise
    except Image.DecompressionBombError as err:
        raise ImageProblem(f"refused as a decompression bomb ({first_line(err)})") from err
    except UnidentifiedImageError as err:
        raise ImageProblem("not an image Pillow can open") from err
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        raise ImageProblem(f"cannot be read ({err.strerror or type(err).__name__})") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageProblem(f"damaged image ({first_line(err)})") from err


def reducible(image: Image.Image) -> Image.Image:
    """The image in a mode that Pillow's ``reduce`` takes: bilevel scans become grey, palette
    images colour (with their transparency), 16-bit images 32-bit integers (the same values)."""
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode.startswith("I;16"):
        return image.convert("I")
    return image


def to_gray(image: Image.Image) -> np.ndarray:
    """A float array in [0, 1]; transparent pixels count as white paper, 16-bit and float images
    are scaled from their own range (Pillow's convert to 8 bits would clip them)."""
    if image.mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        return (values - low) / (high - low) if high > low else np.zeros_like(values)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    if image.mode == "LAB":  # Pillow converts LAB to RGB, not straight to grey
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def bright_ink(gray: np.ndarray) -> np.ndarray:
    """Ink as bright values on a zero background (MNIST's polarity), contrast stretched to [0, 1].

    The paper's level is the median of the border pixels: a digit rarely touches all four edges.
    Dark ink on light paper is inverted.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    ink = gray - paper if paper < 0.5 else paper - gray
    peak = float(np.percentile(ink, 99.9))
    if peak < MIN_CONTRAST:
        raise ImageProblem("no ink found (a blank or uniform image)")
    ink = np.clip(ink / peak, 0.0, 1.0)
    ink[ink < 0.25] = 0.0  # paper texture, shadows and JPEG noise
    return ink


def stroke_width(mask: np.ndarray) -> float:
    """Average stroke width in pixels: twice the ink area over its outline's length."""
    area = int(mask.sum())
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    outline = max(1, area - int(inner.sum()))
    return 2.0 * area / outline


def mnist_style(image: Image.Image) -> torch.Tensor:
    """A (1, 28, 28) float tensor in [0, 1]: the digit as MNIST would have stored it."""
    ink = bright_ink(to_gray(image))
    mask = ink > 0.5
    if mask.sum() < 4:
        raise ImageProblem("no ink found (only specks)")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))  # rows and columns, not every pixel
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = ink[top:bottom, left:right]
    longer = max(crop.shape)
    scale = BOX / longer
    # A thin pen on a big picture would shrink to faint hairlines: thicken to MNIST's stroke first.
    wanted = MNIST_STROKE / scale
    width = stroke_width(mask[top:bottom, left:right])
    pixels = np.uint8(np.round(crop * 255))
    if width < 0.6 * wanted:
        size = int(round(wanted - width)) | 1  # odd: centred on each pixel
        # A separable maximum filter: the same values as Pillow's MaxFilter, whose cost grows with
        # the square of the size, which a thin line on a big picture makes a server's worst case.
        pixels = max_filter(np.pad(pixels, size // 2 + 1), size)
        longer = max(pixels.shape)
        scale = BOX / longer
    digit = Image.fromarray(pixels)
    new_size = (max(1, round(digit.width * scale)), max(1, round(digit.height * scale)))
    small = np.asarray(digit.resize(new_size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    small = np.clip(small, 0.0, 1.0)
    if small.max() > 0:
        small = small / small.max()
    return torch.from_numpy(centre_by_mass(small)).unsqueeze(0)


def running_max(values: np.ndarray, size: int, axis: int) -> np.ndarray:
    """The maximum of each centred window of ``size`` (odd) along ``axis``, edges repeated: in
    log2(size) passes (each doubles the window), so its cost barely grows with the size."""
    half = size // 2
    padding = [(0, 0)] * values.ndim
    padding[axis] = (half, half)
    window, span = np.pad(values, padding, mode="edge"), 1
    while 2 * span <= size:  # window[i] = max of the next ``span`` values from i
        length = window.shape[axis] - span
        window = np.maximum(window.take(range(length), axis), window.take(range(span, span + length), axis))
        span *= 2
    n = values.shape[axis]  # two windows of ``span`` cover ``size`` values: [i, i+span) and [i+size-span, i+size)
    return np.maximum(window.take(range(n), axis), window.take(range(size - span, size - span + n), axis))


def max_filter(pixels: np.ndarray, size: int) -> np.ndarray:
    """A ``size`` x ``size`` maximum filter (Pillow's MaxFilter), one axis at a time."""
    return running_max(running_max(pixels, size, 0), size, 1)


def read_digit(source: Path | bytes) -> torch.Tensor:
    """``mnist_style(load_image(source))``, the one way task=predict and the server read a user's file:
    whatever goes wrong on the way is an ``ImageProblem`` naming it, so that one bad file is listed
    (predict) or answered with a 4xx (serve) and the others are still read."""
    try:
        return mnist_style(load_image(source))
    except ImageProblem:
        raise
    except Exception as err:  # noqa: BLE001 - a file Pillow or numpy trips over in a way not foreseen
        raise ImageProblem(f"cannot be processed ({type(err).__name__}: {first_line(err)})") from err


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place a digit in the 28x28 field so that its centre of mass lands on the field's centre."""
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    height, width = digit.shape
    total = float(digit.sum())
    rows, cols = np.indices(digit.shape)
    centre_row = float((rows * digit).sum() / total) if total else (height - 1) / 2
    centre_col = float((cols * digit).sum() / total) if total else (width - 1) / 2
    top = int(round((FIELD - 1) / 2 - centre_row))
    left = int(round((FIELD - 1) / 2 - centre_col))
    top = min(max(top, 0), FIELD - height)  # keep the whole digit inside the field
    left = min(max(left, 0), FIELD - width)
    field[top : top + height, left : left + width] = digit
    return field


def plain_resize(image: Image.Image) -> torch.Tensor:
    """The naive way, for comparison only: grayscale, resized to 28x28, no inversion or centring."""
    small = image.convert("L").resize((FIELD, FIELD), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).unsqueeze(0)
