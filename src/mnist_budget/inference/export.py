"""A checkpoint's network as one self-contained file, and that file run back and checked.

``onnx`` writes an ONNX model for ONNX Runtime (any language, no PyTorch needed); ``pt2`` a
``torch.export`` program (``torch.export.load(path).module()``). Lightning's ``to_torchscript`` is
not used: TorchScript is deprecated. Both have a dynamic batch dimension. The runners give the
exported file back as ``Logits`` (mnist_budget.inference.classify), so that the server and the
benchmarks read digits through the same path as PyTorch; ``verify`` compares them on the test set
and scores the file there: each image once (one forward pass), and, where the checkpoint's run
scored with test-time augmentation (``eval_tta``), with the same TTA too, so that its figure
compares with the run's.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch

from mnist_budget.checkpoints import dataset_of
from mnist_budget.data.loading import load_mnist, to_float_images
from mnist_budget.data.sets import DATASETS, DataSet, normalise
from mnist_budget.errors import UserError
from mnist_budget.inference.classify import Logits, mean_probabilities

INPUT, OUTPUT = "image", "logits"


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
            net,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=batch_dimension(),
            dynamo=True,
            external_data=False,
        )


def export_pt2(net: torch.nn.Module, path: Path) -> None:
    program = torch.export.export(net, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=batch_dimension())
    torch.export.save(program, str(path))


def onnx_runner(path: Path, threads: int | None = None) -> Logits:
    """The exported ONNX file through ONNX Runtime on the CPU, as ``Logits``."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run([OUTPUT], {INPUT: images.contiguous().numpy()})[0])


def pt2_runner(path: Path) -> Logits:
    """The exported program, loaded back from its file, as ``Logits``."""
    return torch.export.load(str(path)).module()


RUNNERS: dict[str, Callable[[Path], Logits]] = {"onnx": onnx_runner, "pt2": pt2_runner}
EXPORTERS: dict[str, Callable[[torch.nn.Module, Path], None]] = {"onnx": export_onnx, "pt2": export_pt2}


def verify(
    net: torch.nn.Module,
    run: Logits,
    data_dir: Path,
    tolerance: float,
    data: DataSet = DATASETS["mnist"],
    tta: bool = False,
) -> dict[str, Any]:
    """Both on the official 10k test images of ``data``: the largest logit difference, argmax
    agreement, and the exported file's accuracy scoring each image once (``test_acc``); with ``tta``
    also its accuracy with test-time augmentation (``test_acc_tta``: each image's mean probability
    over itself and its four 1-pixel shifts, 5 forward passes, as training's ``eval_tta`` scores)."""
    images, labels = load_mnist(data_dir, train=False, name=data.name)
    inputs = normalise(to_float_images(images), data)
    max_diff, same, correct, correct_tta = 0.0, 0, 0, 0
    with torch.inference_mode():
        for batch, truth in zip(inputs.split(1000), labels.split(1000), strict=True):
            expected, got = net(batch), run(batch)
            max_diff = max(max_diff, float((expected - got).abs().max()))
            same += int((expected.argmax(1) == got.argmax(1)).sum())
            correct += int((got.argmax(1) == truth).sum())
            if tta:
                correct_tta += int((mean_probabilities(run, batch, data.background).argmax(1) == truth).sum())
    report = {"max_abs_logit_diff": max_diff, "argmax_agreement": same / len(labels), "test_acc": correct / len(labels)}
    if tta:
        report["test_acc_tta"] = correct_tta / len(labels)
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
        "output": {
            "name": OUTPUT,
            "shape": ["batch", 10],
            "meaning": "unnormalised class scores; softmax gives probabilities",
        },
        "dataset": data.name,
        "classes": list(data.classes),
        "normalisation": {"mean": data.mean, "std": data.std, "formula": "(pixel / 255 - mean) / std"},
        "preprocessing": "white digit on black, longer side 20 px, centre of mass at the centre of 28x28 "
        "(MNIST's own recipe; mnist_budget.data.preprocess.mnist_style does it for any photo or scan)",
    }
