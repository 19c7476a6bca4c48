"""How well ``task=predict`` reads digits that look like photos and scans, not like MNIST.

Builds a test set from official test images the model never trained on, made to look like
handwriting on paper: dark ink on light (sometimes tinted, unevenly lit) paper, enlarged to
40-600 pixels, off-centre on a bigger sheet, some blurred, some in coloured ink, some written with a
thin pen, some on a dark board, saved as PNG, JPEG, BMP or transparent PNG. Then predicts each with
MNIST-style preprocessing (``mnist_budget.data.preprocess.mnist_style``) and with a plain resize to
28x28, and prints the accuracy of both per kind of image and overall.

    uv run python benchmarks/predict_quality.py CKPT [--count 1000] [--keep DIR] [--smoke]

The test images come from the data folder a run uses (MNIST_BUDGET_DATA, else ./data).
``--smoke``: one image of each kind (a check that it runs).
"""

from __future__ import annotations

import argparse
import io
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from common import SMOKE_HELP, data_dir, device_note, mnist_network
from mnist_budget.data.loading import load_mnist
from mnist_budget.data.preprocess import ImageProblem, load_image, mnist_style, plain_resize
from mnist_budget.inference.classify import Predictor


def enlarge(digit: np.ndarray, height: int) -> Image.Image:
    """The 28x28 digit (white on black) scaled so that its 28-pixel field becomes ``height`` pixels."""
    return Image.fromarray(digit).resize((height, height), Image.Resampling.BICUBIC)


def on_paper(
    ink_map: Image.Image, rng: np.random.Generator, paper: tuple[int, ...], ink: tuple[int, ...]
) -> Image.Image:
    """Paint ``ink_map`` (white = ink) in ink colour on a paper-coloured sheet bigger than the digit, off-centre."""
    side = ink_map.width
    width, height = (int(side * rng.uniform(1.2, 2.5)) for _ in range(2))
    sheet_map = Image.new("L", (width, height), 0)
    sheet_map.paste(ink_map, (int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))))
    alpha = np.asarray(sheet_map, dtype=np.float32)[..., None] / 255.0
    colours = alpha * np.array(ink, np.float32) + (1 - alpha) * np.array(paper, np.float32)
    light = np.linspace(rng.uniform(0.75, 1.0), 1.0, width, dtype=np.float32)[None, :, None]  # uneven lighting
    noisy = colours * light + rng.normal(0, 5, colours.shape)
    return Image.fromarray(np.uint8(np.clip(noisy, 0, 255)).squeeze())


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def scan_png(digit: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes]:
    grey = int(rng.integers(200, 246))
    image = on_paper(enlarge(digit, int(rng.integers(60, 300))), rng, (grey,), (int(rng.integers(10, 80)),))
    return ".png", encoded(image, "PNG")


def photo_jpeg(digit: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes]:
    ink = [(25, 35, 120), (20, 20, 20), (150, 20, 25), (20, 90, 40)][int(rng.integers(4))]
    paper = (int(rng.integers(215, 250)), int(rng.integers(205, 240)), int(rng.integers(170, 230)))
    image = on_paper(enlarge(digit, int(rng.integers(120, 600))), rng, paper, ink)
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
    return ".jpg", encoded(image, "JPEG", quality=int(rng.integers(45, 90)))


def thin_pen_bmp(digit: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes]:
    big = enlarge(digit, int(rng.integers(250, 500)))
    thin = big.filter(ImageFilter.MinFilter(int(rng.choice([5, 7, 9]))))  # erode the strokes
    return ".bmp", encoded(on_paper(thin, rng, (240,), (30,)).convert("RGB"), "BMP")


def chalkboard_jpeg(digit: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes]:
    image = on_paper(enlarge(digit, int(rng.integers(80, 300))), rng, (35, 60, 45), (225, 230, 220))
    return ".jpg", encoded(image, "JPEG", quality=80)


def transparent_png(digit: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes]:
    ink = enlarge(digit, int(rng.integers(40, 120)))
    rgba = Image.new("RGBA", ink.size, (0, 0, 0, 0))
    rgba.putalpha(ink)  # black ink where the digit is, transparent elsewhere
    return ".png", encoded(rgba, "PNG")


def rotated_scan_jpeg(digit: np.ndarray, rng: np.random.Generator) -> tuple[str, bytes]:
    big = enlarge(digit, int(rng.integers(100, 300))).rotate(float(rng.uniform(-12, 12)), Image.Resampling.BICUBIC)
    return ".jpg", encoded(on_paper(big, rng, (230,), (40,)), "JPEG", quality=70)


KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[str, bytes]]] = {
    "scan (grey paper, PNG)": scan_png,
    "photo (coloured ink, tinted paper, blur, JPEG)": photo_jpeg,
    "thin pen (BMP)": thin_pen_bmp,
    "chalkboard (light on dark, JPEG)": chalkboard_jpeg,
    "transparent PNG (small)": transparent_png,
    "rotated ±12° (JPEG)": rotated_scan_jpeg,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--count", type=int, default=1200, help="test images used (spread over the kinds)")
    parser.add_argument("--keep", type=Path, help="write the generated images here (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_HELP}; --count {len(KINDS)}")
    args = parser.parse_args(argv)
    if args.smoke:
        args.count = len(KINDS)
    print(device_note())
    net, hparams = mnist_network(args.checkpoint)
    predictor = Predictor(net, batch_size=1)
    images, labels = load_mnist(Path(data_dir()), train=False)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(images), size=args.count, replace=False)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="predict-quality-"))
    folder.mkdir(parents=True, exist_ok=True)
    names = list(KINDS)
    hits: dict[str, dict[str, list[bool]]] = {"mnist_style": defaultdict(list), "plain_resize": defaultdict(list)}
    for n, index in enumerate(chosen):
        kind = names[n % len(names)]
        suffix, data = KINDS[kind](images[index].numpy(), rng)
        path = folder / f"{n:04d}_label{int(labels[index])}{suffix}"
        path.write_bytes(data)
        image = load_image(path)
        for method, prepare in (("mnist_style", mnist_style), ("plain_resize", plain_resize)):
            try:
                tensor = prepare(image)
            except ImageProblem:
                hits[method][kind].append(False)
                continue
            predicted = int(predictor(tensor.unsqueeze(0)).argmax())
            hits[method][kind].append(predicted == int(labels[index]))
    print(f"model {hparams['model']['name']}, {args.count} images in {folder}")
    print("| kind | images | MNIST-style preprocessing | plain resize to 28x28 |\n| --- | ---: | ---: | ---: |")
    for kind in names:
        got = [hits[m][kind] for m in ("mnist_style", "plain_resize")]
        print(f"| {kind} | {len(got[0])} | {100 * np.mean(got[0]):.1f} % | {100 * np.mean(got[1]):.1f} % |")
    total = [sum(map(sum, hits[m].values())) / args.count for m in ("mnist_style", "plain_resize")]
    print(f"| **all** | {args.count} | **{100 * total[0]:.1f} %** | {100 * total[1]:.1f} % |")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
