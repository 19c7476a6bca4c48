"""``task=export``: a checkpoint's network as one self-contained file, checked against PyTorch.

``format=onnx`` writes an ONNX model for ONNX Runtime (any language, no PyTorch needed);
``format=pt2`` a ``torch.export`` program (``torch.export.load(path).module()``). Lightning's
``to_torchscript`` is not used: TorchScript is deprecated. Both have a dynamic batch dimension.
Beside the file, ``<file>.json`` says how to feed it: normalisation, input shape, class names.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from mnist_budget.checkpoints import check_dataset, dataset_of, network_of
from mnist_budget.errors import UserError
from mnist_budget.hardware import describe, hardware_line
from mnist_budget.mnist_files import DATASETS, DataSet, normalise
from mnist_budget.models import count_parameters
from mnist_budget.validate import check_data_files, check_output_path, positive_number

log = logging.getLogger(__name__)

FORMATS = ("onnx", "pt2")
INPUT, OUTPUT = "image", "logits"


def check(cfg: DictConfig, run_dir: Path, multirun: bool) -> None:
    """A checkpoint whose network loads, a known format, and, when verifying, the test files of
    the data set it learnt."""
    _, hparams = network_of(cfg)
    check_format(str(cfg.format))
    if cfg.get("output"):
        check_output_path("output", Path(str(cfg.output)))
    if cfg.get("verify", True):
        positive_number(cfg, "tolerance", "the largest logit difference accepted")
        check_dataset(cfg, hparams)
        check_data_files(cfg)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"format={fmt} is not supported: use {' or '.join(FORMATS)}")


def batch_dimension() -> tuple[dict[int, Any]]:
    # An example batch of 2, not 1: torch.export would otherwise specialise the dimension to 1.
    return ({0: torch.export.Dim("batch", min=1, max=1 << 20)},)


def export_onnx(net: torch.nn.Module, path: Path) -> None:
    example = torch.zeros(2, 1, 28, 28)
    chatter = io.StringIO()  # the exporter prints its progress; the log says what happened
    for name in ("onnxscript", "onnx_ir"):  # their graph passes log every step at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.redirect_stdout(chatter):
        torch.onnx.export(
            net, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
            dynamic_shapes=batch_dimension(), dynamo=True, external_data=False,
        )  # fmt: skip


def export_pt2(net: torch.nn.Module, path: Path) -> None:
    program = torch.export.export(net, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=batch_dimension())
    torch.export.save(program, str(path))


def onnx_runner(path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Logits from the exported ONNX file, through ONNX Runtime on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda images: session.run([OUTPUT], {INPUT: images})[0]


def pt2_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Logits from the exported program, loaded back from its file."""
    module = torch.export.load(str(path)).module()

    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(images)).numpy()

    return run


RUNNERS = {"onnx": onnx_runner, "pt2": pt2_runner}
EXPORTERS = {"onnx": export_onnx, "pt2": export_pt2}


def verify(
    net: torch.nn.Module, run: Callable[[np.ndarray], np.ndarray], data_dir: Path, tolerance: float, data: DataSet = DATASETS["mnist"]
) -> dict[str, Any]:
    """Both on the official 10k test images of ``data``: the largest logit difference, argmax
    agreement, accuracy."""
    from mnist_budget.data import (  # imports Lightning: not at the top (see check)
        load_mnist,
        to_float_images,
    )

    images, labels = load_mnist(data_dir, train=False, name=data.name)
    inputs = normalise(to_float_images(images), data)
    max_diff, same, correct = 0.0, 0, 0
    with torch.inference_mode():
        for batch, truth in zip(inputs.split(1000), labels.split(1000), strict=True):
            expected = net(batch).numpy()
            got = run(batch.numpy())
            max_diff = max(max_diff, float(np.abs(expected - got).max()))
            same += int((expected.argmax(1) == got.argmax(1)).sum())
            correct += int((got.argmax(1) == truth.numpy()).sum())
    report = {"max_abs_logit_diff": max_diff, "argmax_agreement": same / len(labels), "test_acc": correct / len(labels)}
    if max_diff > tolerance or same != len(labels):
        raise UserError(
            f"the exported model disagrees with PyTorch (largest logit difference {max_diff:.2e}, "
            f"{len(labels) - same} different predictions of {len(labels)}): raise tolerance= or report it as a bug"
        )
    return report


def sidecar(path: Path, hparams: dict[str, Any], params: int, fmt: str, checkpoint: str) -> dict[str, Any]:
    """What a program that loads the file needs to know to feed it."""
    data = dataset_of(hparams)
    return {
        "file": path.name,
        "format": fmt,
        "model": hparams["model"]["name"],
        "params": params,
        "checkpoint": checkpoint,
        "input": {"name": INPUT, "shape": ["batch", 1, 28, 28], "dtype": "float32", "layout": "NCHW"},
        "output": {"name": OUTPUT, "shape": ["batch", 10], "meaning": "unnormalised class scores; softmax gives probabilities"},
        "dataset": data.name,
        "classes": list(data.classes),
        "normalisation": {"mean": data.mean, "std": data.std, "formula": "(pixel / 255 - mean) / std"},
        "preprocessing": "white digit on black, longer side 20 px, centre of mass at the centre of 28x28 "
        "(MNIST's own recipe; mnist_budget.preprocess.mnist_style does it for any photo or scan)",
    }


def export(cfg: DictConfig) -> dict[str, float]:
    """Write the file and its JSON, then (``verify``) check it against PyTorch on the test set."""
    fmt = str(cfg.format)
    check_format(fmt)
    output_dir = Path(cfg.paths.output_dir)
    path = Path(cfg.output) if cfg.get("output") else output_dir / f"model.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    net, hparams = network_of(cfg)
    log.info("hardware: %s", hardware_line(describe("cpu")))
    EXPORTERS[fmt](net, path)
    info = sidecar(path, hparams, count_parameters(net), fmt, str(cfg.ckpt_path))
    if cfg.get("verify", True):
        info["verified"] = verify(net, RUNNERS[fmt](path), Path(str(cfg.data.data_dir)), float(cfg.tolerance), dataset_of(hparams))
        log.info(
            "verified on the 10k test images: largest logit difference %.2e, predictions identical, test accuracy %.2f%%",
            info["verified"]["max_abs_logit_diff"], 100 * info["verified"]["test_acc"],
        )
    Path(f"{path}.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info("exported %s (%s, %d bytes) and %s.json", path, fmt, path.stat().st_size, path)
    return {"test/acc": info.get("verified", {}).get("test_acc", float("nan"))}
