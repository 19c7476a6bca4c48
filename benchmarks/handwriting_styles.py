"""How well ``task=predict`` reads handwriting styles that MNIST's writers rarely use, per digit.

MNIST was written by American census staff and students: 1s are single strokes, 7s have no bar,
4s are mostly closed, 9s have straight tails, strokes are of one width. Other people write
otherwise. This script generates (it keeps no data; a seed fixes every image) four kinds of
digit, dresses each as a file a user would have (dark ink on paper, enlarged, off-centre, PNG or
JPEG; ``predict_quality.on_paper``), reads it through the same path as ``task=predict``
(``load_image`` -> ``mnist_style`` -> ``Predictor``) and prints the accuracy per digit and per kind:

- **strokes**: digits drawn from stroke paths in 25 styles (below, ``STYLES``): flagged and footed
  1s, barred and hooked 7s, open 4s, looped 2s, curved-tail 9s, flat-topped 3s ... each drawn
  with random slant, aspect ratio, wobble and pen width;
- **fonts**: the digits of handwriting-like fonts that Debian packages ship (``FONTS``; those not
  installed are skipped and named; .ci/run installs them);
- **degraded MNIST**: official *test* digits (never trained on) thickened, thinned, blurred, or
  reduced to 8-12 pixels and enlarged again, as a low-resolution scan would leave them;
- **scanned strokes**: the stroke styles again, each drawn anew and read through a coarse scan
  (the ink fitted into a 32x32 bitmap and counted in 4x4 blocks, 8x8 levels of 0-16, as older
  digit scanners stored them; ``mnist_budget.data.font_digits.coarse_scan``, which ``extra_train=fonts``
  also applies to font drawings): flags merge into stems and loops open or close. Drawn last, so
  that the other kinds' images stay what they were before this kind existed.

What it does not represent: real people. The strokes are one person's idea of each style, the
fonts are typefaces, the degraded digits are MNIST's own writers, and the scan is one model of
one kind of scanner. A model that is good here can still fail on a style nobody wrote down (the
real test is other people's digits: see docs/use-a-model.md for the figures on a real non-MNIST
set). Use it to compare models and
preprocessing per digit, never as the final verdict.

    uv run python benchmarks/handwriting_styles.py CKPT [CKPT ...] [--per-style 24] [--tta] [--keep DIR] [--smoke]

Several checkpoints: one column each (same images). ``--tta``: also with predict's test-time
augmentation. ``--smoke``: two images per style (a check that it runs).
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from common import SMOKE_HELP, data_dir, device_note, mnist_network, project_config
from mnist_budget.data.font_digits import coarse_scan
from mnist_budget.data.loading import load_mnist
from mnist_budget.data.preprocess import load_image, mnist_style
from mnist_budget.inference.classify import Predictor, is_unsure
from predict_quality import encoded, on_paper

Stroke = list[tuple[float, float]]  # points in a unit box, x to the right, y down


def ellipse(cx: float, cy: float, rx: float, ry: float, start: float = -90.0, points: int = 16) -> Stroke:
    """A closed loop, starting at ``start`` degrees (-90 = the top) and going anticlockwise on screen."""
    return [
        (
            cx + rx * math.cos(math.radians(start - 360 * k / points)),
            cy + ry * math.sin(math.radians(start - 360 * k / points)),
        )
        for k in range(points + 1)
    ]


# Each digit's styles as stroke paths. "plain" is the American, MNIST-like way; the others are the
# styles MNIST's writers rarely used.
STYLES: dict[int, dict[str, list[Stroke]]] = {
    0: {
        "plain": [ellipse(0.5, 0.5, 0.28, 0.4)],
        "narrow, open at the top": [ellipse(0.5, 0.5, 0.18, 0.4, start=-80, points=15)],
    },
    1: {
        "plain": [[(0.5, 0.1), (0.5, 0.9)]],
        "flag": [[(0.3, 0.3), (0.55, 0.1), (0.55, 0.9)]],
        "flag and foot": [[(0.3, 0.3), (0.55, 0.1), (0.55, 0.9)], [(0.3, 0.9), (0.8, 0.9)]],
    },
    2: {
        "plain": [[(0.25, 0.3), (0.4, 0.12), (0.65, 0.12), (0.75, 0.3), (0.6, 0.5), (0.25, 0.88), (0.8, 0.88)]],
        "looped": [
            [
                (0.25, 0.3),
                (0.4, 0.12),
                (0.65, 0.12),
                (0.75, 0.3),
                (0.6, 0.55),
                (0.3, 0.85),
                (0.22, 0.75),
                (0.35, 0.7),
                (0.5, 0.88),
                (0.8, 0.88),
            ]
        ],
        "Z-like": [[(0.22, 0.15), (0.75, 0.15), (0.25, 0.88), (0.8, 0.88)]],
    },
    3: {
        "plain": [[(0.25, 0.2), (0.5, 0.1), (0.72, 0.25), (0.5, 0.48), (0.75, 0.68), (0.5, 0.9), (0.25, 0.8)]],
        "flat top": [[(0.25, 0.12), (0.72, 0.12), (0.45, 0.45), (0.72, 0.6), (0.7, 0.82), (0.5, 0.9), (0.25, 0.82)]],
    },
    4: {
        "closed": [[(0.6, 0.1), (0.2, 0.62), (0.8, 0.62)], [(0.62, 0.35), (0.62, 0.9)]],
        "open": [[(0.3, 0.1), (0.25, 0.6), (0.8, 0.6)], [(0.65, 0.2), (0.65, 0.9)]],
        "open, one stroke": [[(0.3, 0.1), (0.25, 0.6), (0.65, 0.58), (0.65, 0.2), (0.65, 0.9)]],
    },
    5: {
        "plain": [
            [(0.75, 0.12), (0.32, 0.12), (0.28, 0.45), (0.6, 0.42), (0.75, 0.6), (0.68, 0.82), (0.45, 0.9), (0.25, 0.8)]
        ],
        "bar last": [
            [(0.32, 0.12), (0.28, 0.45), (0.6, 0.42), (0.75, 0.6), (0.68, 0.82), (0.45, 0.9), (0.25, 0.8)],
            [(0.32, 0.12), (0.75, 0.1)],
        ],
    },
    6: {
        "plain": [
            [(0.68, 0.12), (0.38, 0.35), (0.25, 0.65), (0.4, 0.88), (0.65, 0.85), (0.72, 0.65), (0.55, 0.5), (0.3, 0.6)]
        ],
        "straight back": [[(0.6, 0.1), (0.3, 0.6), (0.35, 0.85), (0.6, 0.88), (0.7, 0.7), (0.55, 0.55), (0.32, 0.62)]],
    },
    7: {
        "plain": [[(0.2, 0.12), (0.8, 0.12), (0.45, 0.9)]],
        "barred": [[(0.2, 0.12), (0.8, 0.12), (0.45, 0.9)], [(0.35, 0.52), (0.75, 0.5)]],
        "hooked top": [[(0.2, 0.25), (0.22, 0.12), (0.8, 0.12), (0.5, 0.5), (0.45, 0.9)]],
    },
    8: {
        "plain": [
            [
                (0.5, 0.5),
                (0.3, 0.32),
                (0.5, 0.12),
                (0.7, 0.32),
                (0.5, 0.5),
                (0.28, 0.7),
                (0.5, 0.9),
                (0.72, 0.7),
                (0.5, 0.5),
            ]
        ],
        "two loops": [ellipse(0.5, 0.3, 0.17, 0.19, start=90), ellipse(0.5, 0.7, 0.22, 0.2, start=-90)],
    },
    9: {
        "plain": [[(0.72, 0.35), (0.5, 0.12), (0.3, 0.3), (0.5, 0.5), (0.72, 0.35), (0.68, 0.9)]],
        "curved tail": [
            [(0.72, 0.3), (0.5, 0.12), (0.3, 0.28), (0.5, 0.46), (0.72, 0.3), (0.7, 0.7), (0.55, 0.9), (0.33, 0.85)]
        ],
        "round head": [ellipse(0.5, 0.3, 0.2, 0.2, start=0), [(0.7, 0.3), (0.7, 0.9)]],
    },
}

# Handwriting-like fonts from Debian packages (package: files under /usr/share/fonts). Outline fonts
# (fonts-femkeklaver's hollow strokes) are left out: nobody writes like that.
FONTS = {
    "fonts-dkg-handwriting": ["truetype/fifthhorseman/dkg.ttf"],
    "fonts-breip": ["truetype/breip/Breip.ttf"],
    "fonts-bwht": [
        f"opentype/bwht/BecauseWe{name}-Regular.otf"
        for name in ("Build", "Connect", "Create", "Learn", "Mentor", "Organize")
    ],
    "fonts-humor-sans": ["truetype/humor-sans/Humor-Sans.ttf"],
    "fonts-comic-neue": ["opentype/comic-neue/ComicNeue-Regular.otf"],
    "fonts-dancingscript": ["opentype/dancingscript/DancingScript-Regular.otf"],
}
FONT_ROOT = Path("/usr/share/fonts")


@dataclass
class Sample:
    kind: str  # strokes, fonts, degraded MNIST, scanned strokes
    style: str
    digit: int
    suffix: str
    data: bytes


def draw_strokes(strokes: list[Stroke], rng: np.random.Generator, side: int = 112) -> Image.Image:
    """White ink on black: the strokes with a random slant, aspect, wobble and pen width."""
    slant = rng.uniform(-0.35, 0.25)  # x shifts with height: forward or backward lean
    aspect = rng.uniform(0.7, 1.15)
    angle = math.radians(rng.uniform(-8, 8))
    width = int(side * rng.uniform(0.07, 0.15))
    image = Image.new("L", (side, side), 0)
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        points = []
        for x, y in stroke:
            x, y = x + rng.normal(0, 0.02), y + rng.normal(0, 0.02)
            x = 0.5 + (x - 0.5) * aspect + slant * (0.5 - y)
            dx, dy = x - 0.5, y - 0.5
            x, y = 0.5 + dx * math.cos(angle) - dy * math.sin(angle), 0.5 + dx * math.sin(angle) + dy * math.cos(angle)
            points.append((side * (0.15 + 0.7 * x), side * (0.15 + 0.7 * y)))
        pen.line(points, fill=255, width=width, joint="curve")
        for px, py in (points[0], points[-1]):  # round pen ends
            pen.ellipse([px - width / 2, py - width / 2, px + width / 2, py + width / 2], fill=255)
    return image.filter(ImageFilter.GaussianBlur(side / 120))


def font_digit(font_file: Path, digit: int, rng: np.random.Generator, side: int = 112) -> Image.Image:
    font = ImageFont.truetype(str(font_file), size=int(side * 0.7))
    image = Image.new("L", (side, side), 0)
    ImageDraw.Draw(image).text((side / 2, side / 2), str(digit), fill=255, font=font, anchor="mm")
    return image.rotate(float(rng.uniform(-8, 8)), Image.Resampling.BICUBIC)


def degrade(digit: np.ndarray, how: str, rng: np.random.Generator) -> Image.Image:
    """An official MNIST test digit (28x28, white on black) as a worse scan would leave it, 112 px."""
    big = Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC)
    if how == "thick pen":
        return big.filter(ImageFilter.MaxFilter(int(rng.choice([7, 9, 11]))))
    if how == "thin pen":
        return big.filter(ImageFilter.MinFilter(int(rng.choice([5, 7]))))
    if how == "blurred":
        return big.filter(ImageFilter.GaussianBlur(float(rng.uniform(3, 6))))
    low = int(rng.integers(8, 13))  # low resolution: the 28-pixel field read at 8-12 pixels
    return Image.fromarray(digit).resize((low, low), Image.Resampling.BOX).resize((112, 112), Image.Resampling.BICUBIC)


def scanned_strokes(strokes: list[Stroke], rng: np.random.Generator) -> Image.Image:
    """White ink on black: the strokes drawn (``draw_strokes``) and read through a coarse 8x8 scan;
    drawn again in the rare case that too little ink survives the scan."""
    while True:
        scan = coarse_scan(ImageOps.invert(draw_strokes(strokes, rng)), rng)  # it reads dark ink on white
        if scan is not None:
            return ImageOps.invert(scan)


def dressed(ink: Image.Image, rng: np.random.Generator, index: int) -> tuple[str, bytes]:
    """White-on-black ``ink`` as a user's file: dark ink on light paper, 60-300 px, PNG or JPEG."""
    ink = ink.resize((size := int(rng.integers(60, 300)), size), Image.Resampling.BICUBIC)
    if index % 2:
        paper = (int(rng.integers(215, 250)), int(rng.integers(205, 240)), int(rng.integers(180, 230)))
        colour = [(25, 35, 120), (20, 20, 20), (150, 20, 25)][index % 3]
        return ".jpg", encoded(on_paper(ink, rng, paper, colour), "JPEG", quality=int(rng.integers(60, 90)))
    grey = int(rng.integers(205, 246))
    return ".png", encoded(on_paper(ink, rng, (grey,), (int(rng.integers(10, 70)),)), "PNG")


def installed_fonts() -> tuple[dict[str, Path], list[str]]:
    found, missing = {}, []
    for package, files in FONTS.items():
        present = [FONT_ROOT / f for f in files if (FONT_ROOT / f).is_file()]
        if not present:
            missing.append(package)
        for path in present:
            found[path.stem] = path
    return found, missing


def samples(per_style: int, seed: int = 0) -> Iterator[Sample]:
    """The whole benchmark, in a fixed order: ``per_style`` images of each stroke style, of each
    font's digits (spread over the fonts), of each MNIST degradation and of each stroke style
    scanned."""
    rng = np.random.default_rng(seed)
    n = 0

    def each_style(kind: str, draw: Callable[[list[Stroke], np.random.Generator], Image.Image]) -> Iterator[Sample]:
        nonlocal n
        for digit, styles in STYLES.items():
            for style, strokes in styles.items():
                for _ in range(per_style):
                    yield Sample(kind, f"{digit} {style}", digit, *dressed(draw(strokes, rng), rng, n))
                    n += 1

    yield from each_style("strokes", draw_strokes)
    fonts, _ = installed_fonts()
    for k in range(per_style * 2 if fonts else 0):
        name, path = list(fonts.items())[k % len(fonts)]
        for digit in range(10):
            yield Sample("fonts", name, digit, *dressed(font_digit(path, digit, rng), rng, n))
            n += 1
    images, labels = load_mnist(Path(data_dir()), train=False)
    for how in ("thick pen", "thin pen", "blurred", "low resolution"):
        for index in rng.choice(len(images), size=per_style * 5, replace=False):
            digit = int(labels[index])
            yield Sample("degraded MNIST", how, digit, *dressed(degrade(images[index].numpy(), how, rng), rng, n))
            n += 1
    yield from each_style("scanned strokes", scanned_strokes)


def table_rows(sample: Sample) -> tuple[str, ...]:
    """The rows of the tables an image counts in: its digit, its kind, its style, and all."""
    return (f"digit {sample.digit}", sample.kind, f"{sample.kind}: {sample.style}", "all")


def accuracy_table(hits: dict[str, dict], columns: list[str], counts: dict) -> str:
    header = "| | images | " + " | ".join(columns) + " |\n| --- | ---: | " + " | ".join("---:" for _ in columns) + " |"
    lines = [header]
    for row, count in counts.items():
        cells = [f"{100 * np.mean(hits[c][row]):.1f}" for c in columns]
        lines.append(f"| {row} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def column_names(checkpoints: list[str]) -> list[str]:
    """Short names for the columns (run folder / file), numbered when two would be the same
    (the same seed's folder of two sweeps), so that no column hides another."""
    short = [f"{Path(c).parent.parent.name}/{Path(c).name}" for c in checkpoints]
    if len(set(short)) == len(short):
        return short
    return [f"{n}: {name}" for n, name in enumerate(short, start=1)]


def confidence_line(column: str, right: list[bool], flagged: list[bool]) -> str:
    """How often a flagged prediction is wrong, against an unflagged one: what the flag is worth."""
    wrong_flagged = sum(not ok for ok, flag in zip(right, flagged, strict=True) if flag)
    wrong_kept = sum(not ok for ok, flag in zip(right, flagged, strict=True) if not flag)
    n_flagged = sum(flagged)
    n_kept = len(right) - n_flagged
    share = f"{100 * wrong_flagged / n_flagged:.1f} %" if n_flagged else "-"
    return (
        f"- {column}: {n_flagged} of {len(right)} flagged, {share} of them wrong; "
        f"{100 * wrong_kept / max(1, n_kept):.1f} % of the {n_kept} unflagged wrong "
        f"({wrong_flagged} of the {wrong_flagged + wrong_kept} errors flagged)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT")
    parser.add_argument(
        "--per-style",
        type=int,
        default=24,
        help="images per stroke style (drawn, and again scanned), font digit (x2) and degradation (x5)",
    )
    parser.add_argument(
        "--tta", action="store_true", help="also score each checkpoint with predict's test-time augmentation"
    )
    parser.add_argument(
        "--unsure-below", type=float, help="the confidence threshold (default: unsure_below of conf/config.yaml)"
    )
    parser.add_argument("--keep", type=Path, help="write the generated images here (default: none are kept)")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_HELP}; --per-style 2")
    args = parser.parse_args(argv)
    per_style = 2 if args.smoke else args.per_style
    unsure_below = args.unsure_below if args.unsure_below is not None else float(project_config().unsure_below)
    print(device_note())
    fonts, missing = installed_fonts()
    if missing:
        print(f"fonts not installed, skipped: {', '.join(missing)} (apt-get install -y {' '.join(missing)})")
    tensors, rows = [], []
    folder = args.keep
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    for n, sample in enumerate(samples(per_style)):
        if folder:
            (
                folder / f"{n:05d}_{sample.kind}_{sample.style}_label{sample.digit}{sample.suffix}".replace(" ", "-")
            ).write_bytes(sample.data)
        tensors.append(mnist_style(load_image(sample.data)))
        rows.append(sample)
    images = torch.stack(tensors)
    labels = torch.tensor([s.digit for s in rows])
    hits: dict[str, dict[str, list[bool]]] = {}
    columns = []
    confidence = []
    for checkpoint, name in zip(args.checkpoints, column_names(args.checkpoints), strict=True):
        net, _ = mnist_network(checkpoint)
        for tta in (False, True) if args.tta else (False,):
            column = name + (" +TTA" if tta else "")
            columns.append(column)
            probabilities = Predictor(net, tta=tta)(images)
            right = (probabilities.argmax(1) == labels).tolist()
            flagged = [is_unsure(float(p), unsure_below) for p in probabilities.max(1).values]
            confidence.append(confidence_line(column, right, flagged))
            table: dict[str, list[bool]] = defaultdict(list)
            for sample, ok in zip(rows, right, strict=True):
                for key in table_rows(sample):
                    table[key].append(ok)
            hits[column] = table
    counts: dict[str, int] = defaultdict(int)
    for sample in rows:
        for key in table_rows(sample):
            counts[key] += 1
    order = [f"digit {d}" for d in range(10)] + ["strokes", "fonts", "degraded MNIST", "scanned strokes", "all"]
    if column_names(args.checkpoints)[0].startswith("1: "):  # numbered: say which file each is
        print("columns: " + "; ".join(f"{n} = {c}" for n, c in enumerate(args.checkpoints, start=1)))
    print(f"{len(rows)} images ({len(fonts)} fonts); accuracy in % per digit and per kind:\n")
    print(accuracy_table(hits, columns, {k: counts[k] for k in order if k in counts}))
    print(f"\nflagged as unsure (top probability below {unsure_below}):")
    print("\n".join(confidence))
    print(
        f"\nper style ({per_style} images each: a row moves by several points from one draw to the next; --per-style draws more):\n"
    )
    print(accuracy_table(hits, columns, {k: v for k, v in counts.items() if ": " in k}))


if __name__ == "__main__":
    main()
