"""``task=predict``: read the digit in each of the user's own images."""

from __future__ import annotations

import csv
import glob
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image

from mnist_budget.checkpoints import dataset_of, network_of
from mnist_budget.errors import UserError
from mnist_budget.mnist_files import DATASETS, DataSet
from mnist_budget.preprocess import ImageProblem, normalise, read_digit
from mnist_budget.tta import mean_probabilities
from mnist_budget.validate import check_output_path, positive_int, required

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}


@dataclass
class Prediction:
    path: str
    digit: int | None = None
    probability: float | None = None
    top3: list[tuple[int, float]] = field(default_factory=list)
    unsure: bool | None = None  # probability below ``unsure_below``: check this one by eye
    error: str | None = None


def find_inputs(spec: str) -> list[Path]:
    """The files an ``input=`` names: one file, a folder's image files (sorted) or a glob's matches."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        # Not is_file(): a broken link or an unreadable entry is listed with its reason, not left out.
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        if not files:
            raise UserError(f"input={spec} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}): point input at images")
        return files
    if glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise UserError(f"input={spec} matches no files: check the pattern (quote it so the shell leaves it alone)")
        return files
    raise UserError(f"input={spec} does not exist: give an image file, a folder of images or a quoted glob")


def check(cfg: DictConfig, run_dir: Path, multirun: bool) -> None:
    """A checkpoint whose network loads, inputs that exist, a batch size and a table it can write."""
    network_of(cfg)
    find_inputs(required(cfg, "input", "an image, a folder of images or a quoted glob"))
    positive_int(cfg, "predict_batch_size", "images per forward pass")
    check_output_path("output", run_dir / str(cfg.output))


def prepare(paths: list[Path], save_to: Path | None) -> tuple[list[Prediction], list[torch.Tensor]]:
    """One Prediction per file and the 28x28 tensor of each readable one (in the same order)."""
    predictions, tensors = [], []
    for path in paths:
        prediction = Prediction(str(path))
        try:
            tensor = read_digit(path)
        except ImageProblem as problem:
            prediction.error = str(problem)
        else:
            tensors.append(tensor)
            if save_to is not None:
                save_to.mkdir(parents=True, exist_ok=True)
                pixels = (tensor[0] * 255).round().byte().numpy()
                Image.fromarray(pixels).save(save_to / f"{len(tensors):04d}_{path.stem}.png")
        predictions.append(prediction)
    return predictions, tensors


@torch.inference_mode()
def classify(
    net: torch.nn.Module, images: torch.Tensor, batch_size: int, tta: bool = False, data: DataSet = DATASETS["mnist"]
) -> torch.Tensor:
    """Class probabilities of [0, 1] images (N, 1, 28, 28), in batches, fp32 on the CPU,
    normalised as ``data`` (the data set the network learnt: ``checkpoints.dataset_of``).

    ``tta``: the mean probability over the image and its one-pixel shifts (``mnist_budget.tta``,
    5 forward passes instead of one).
    """
    def forward(batch: torch.Tensor) -> torch.Tensor:
        return net(normalise(batch, data))

    if tta:
        return torch.cat([mean_probabilities(forward, batch) for batch in images.split(batch_size)])
    return torch.cat([forward(batch).softmax(dim=1) for batch in images.split(batch_size)])


def is_unsure(probability: float, unsure_below: float) -> bool:
    """The one rule of confidence, for predict and serve: a top probability below ``unsure_below``
    (conf/config.yaml) flags the digit as unsure."""
    return probability < unsure_below


def write_table(predictions: list[Prediction], path: Path) -> None:
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps([asdict(p) for p in predictions], indent=2) + "\n")
        return
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "digit", "probability", "top3", "unsure", "error"])
        for p in predictions:
            top3 = " ".join(f"{digit}:{prob:.4f}" for digit, prob in p.top3)
            probability = f"{p.probability:.4f}" if p.probability is not None else ""
            unsure = "" if p.unsure is None else str(p.unsure).lower()
            writer.writerow([p.path, "" if p.digit is None else p.digit, probability, top3, unsure, p.error or ""])


def predict(cfg: DictConfig) -> dict[str, float]:
    """Predict every input; print a line per file and write the table. Nothing readable: a UserError."""
    output_dir = Path(cfg.paths.output_dir)
    paths = find_inputs(required(cfg, "input", "an image, a folder of images or a quoted glob"))
    net, hparams = network_of(cfg)
    save_to = output_dir / "preprocessed" if cfg.get("save_preprocessed") else None
    predictions, tensors = prepare(paths, save_to)
    readable = [p for p in predictions if p.error is None]
    if readable:
        probabilities = classify(net, torch.stack(tensors), int(cfg.predict_batch_size), bool(cfg.tta), dataset_of(hparams))
        for prediction, probs in zip(readable, probabilities, strict=True):
            values, digits = probs.topk(3)
            prediction.top3 = [(int(d), round(float(v), 4)) for d, v in zip(digits, values, strict=True)]
            prediction.digit, prediction.probability = prediction.top3[0]
            prediction.unsure = is_unsure(float(values[0]), cfg.unsure_below)
    for p in predictions:
        if p.error is None:
            top3 = ", ".join(f"{digit} {100 * prob:.1f}%" for digit, prob in p.top3)
            flag = "  UNSURE" if p.unsure else ""
            print(f"{p.path}: {p.digit} ({100 * p.probability:.1f}%){flag}  top-3: {top3}")
        else:
            print(f"{p.path}: skipped ({p.error})")
    table = output_dir / str(cfg.output)
    table.parent.mkdir(parents=True, exist_ok=True)
    write_table(predictions, table)
    unsure = sum(bool(p.unsure) for p in readable)
    log.info(
        "%d of %d images predicted with %s (%d unsure: probability below %s); table: %s",
        len(readable), len(predictions), hparams["model"]["name"], unsure, cfg.unsure_below, table,
    )  # fmt: skip
    if not readable:
        first = predictions[0]
        more = f" (and {len(predictions) - 1} more, see {table})" if len(predictions) > 1 else ""
        raise UserError(f"nothing could be predicted: {first.path}: {first.error}{more}: give images of a digit")
    return {"predicted": float(len(readable))}
