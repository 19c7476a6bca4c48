"""``task=predict``: read the digit in each of the user's own images; one line per file and a table."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image

from mnist_budget.checkpoints import dataset_of, network_of
from mnist_budget.data.preprocess import ImageProblem, read_digit
from mnist_budget.errors import UserError
from mnist_budget.files import write_atomically
from mnist_budget.inference.classify import Predictor, answers
from mnist_budget.inference.inputs import find_inputs
from mnist_budget.rules import required

log = logging.getLogger(__name__)

INPUT_WHAT = "an image, a folder of images or a quoted glob"


@dataclass
class Prediction:
    path: str
    digit: int | None = None
    probability: float | None = None
    top3: list[tuple[int, float]] = field(default_factory=list)
    unsure: bool | None = None  # probability below ``unsure_below``: check this one by eye
    error: str | None = None


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


def table_text(predictions: list[Prediction], suffix: str) -> str:
    """The predictions as JSON (``.json``) or CSV (anything else)."""
    if suffix.lower() == ".json":
        return json.dumps([asdict(p) for p in predictions], indent=2) + "\n"
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "digit", "probability", "top3", "unsure", "error"])
    for p in predictions:
        top3 = " ".join(f"{digit}:{prob:.4f}" for digit, prob in p.top3)
        probability = f"{p.probability:.4f}" if p.probability is not None else ""
        unsure = "" if p.unsure is None else str(p.unsure).lower()
        writer.writerow([p.path, "" if p.digit is None else p.digit, probability, top3, unsure, p.error or ""])
    return text.getvalue()


def console_line(p: Prediction) -> str:
    if p.error is not None:
        return f"{p.path}: skipped ({p.error})"
    top3 = ", ".join(f"{digit} {100 * prob:.1f}%" for digit, prob in p.top3)
    flag = "  UNSURE" if p.unsure else ""
    return f"{p.path}: {p.digit} ({100 * p.probability:.1f}%){flag}  top-3: {top3}"


def predict(cfg: DictConfig) -> dict[str, float]:
    """Predict every input; print a line per file and write the table. Nothing readable: a UserError."""
    output_dir = Path(cfg.paths.output_dir)
    paths = find_inputs(required(cfg, "input", INPUT_WHAT))
    net, hparams = network_of(cfg)
    save_to = output_dir / "preprocessed" if cfg.get("save_preprocessed") else None
    predictions, tensors = prepare(paths, save_to)
    readable = [p for p in predictions if p.error is None]
    if readable:
        predictor = Predictor(net, dataset_of(hparams), tta=bool(cfg.tta), batch_size=int(cfg.predict_batch_size))
        for prediction, answer in zip(
            readable, answers(predictor(torch.stack(tensors)), cfg.unsure_below), strict=True
        ):
            prediction.digit, prediction.probability = answer.digit, answer.probability
            prediction.top3, prediction.unsure = answer.top3, answer.unsure
    for p in predictions:
        print(console_line(p))
    table = output_dir / str(cfg.output)
    write_atomically(table, table_text(predictions, table.suffix))
    unsure = sum(bool(p.unsure) for p in readable)
    log.info(
        "%d of %d images predicted with %s (%d unsure: probability below %s); table: %s",
        len(readable),
        len(predictions),
        hparams["model"]["name"],
        unsure,
        cfg.unsure_below,
        table,
    )
    if not readable:
        first = predictions[0]
        more = f" (and {len(predictions) - 1} more, see {table})" if len(predictions) > 1 else ""
        raise UserError(f"nothing could be predicted: {first.path}: {first.error}{more}: give images of a digit")
    return {"predicted": float(len(readable))}
