"""``task=serve``: the drawing page and the HTTP API for a trained checkpoint (mnist_budget.serving)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from mnist_budget.checkpoints import dataset_of, network_of
from mnist_budget.errors import UserError
from mnist_budget.mnist_files import normalise

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")


def check(cfg: DictConfig, run_dir: Path, multirun: bool) -> None:
    """A checkpoint whose network loads, a known backend, a port that can be bound."""
    network_of(cfg)
    if str(cfg.backend) not in BACKENDS:
        raise UserError(f"backend={cfg.backend} is unknown: use {' or '.join(BACKENDS)}")
    if not (isinstance(cfg.port, int) and 0 < cfg.port < 65536):
        raise UserError(f"port={cfg.port!r} is invalid: it must be an integer from 1 to 65535")


def classifier(cfg: DictConfig) -> tuple:
    """The function from (N, 1, 28, 28) images in [0, 1] to class probabilities, on the chosen
    backend, and the model's name. Threads: ``threads`` (run.py has set torch's already)."""
    net, hparams = network_of(cfg)
    name = hparams["model"]["name"]
    data = dataset_of(hparams)
    if cfg.backend == "onnx":
        from mnist_budget.tasks.export import export_onnx, onnx_runner

        path = Path(tempfile.mkdtemp()) / "model.onnx"
        export_onnx(net, path)
        run = onnx_runner(path, threads=torch.get_num_threads())

        def classify(images: np.ndarray) -> np.ndarray:
            logits = run(normalise(images.astype(np.float32), data))
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            return exp / exp.sum(axis=1, keepdims=True)

        return classify, name

    @torch.inference_mode()
    def classify(images: np.ndarray) -> np.ndarray:
        return net(normalise(torch.from_numpy(images), data)).softmax(dim=1).numpy()

    return classify, name


def serve(cfg: DictConfig) -> dict[str, float]:
    """Start the server on ``host:port`` until Ctrl-C."""
    import uvicorn

    from mnist_budget.serving import Limits, create_app

    classify, name = classifier(cfg)
    app = create_app(classify, name, Limits(int(cfg.max_body_bytes), int(cfg.max_files)), float(cfg.unsure_below))
    log.info("serving %s (%s backend) on http://%s:%d/ (API: POST /predict, docs: /docs)", name, cfg.backend, cfg.host, cfg.port)
    uvicorn.run(app, host=str(cfg.host), port=int(cfg.port), log_level="warning")
    return {}
