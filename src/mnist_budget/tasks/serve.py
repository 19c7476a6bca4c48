"""``task=serve``: the drawing page and the HTTP API for a trained checkpoint (mnist_budget.serving).

One server process (``workers: 1``) holds the network and answers every request. With
``workers: N`` uvicorn starts N processes that share the port, each with its own copy of the
network: Python runs one request's Pillow/numpy work at a time per process, so on a machine with
several cores more workers answer more requests at once (docs/serving.md measures it). The
workers are separate interpreters, so the settings they need travel as a small JSON file named by
the ``MNIST_BUDGET_SERVE_SETTINGS`` environment variable (``app_from_settings`` reads it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mnist_budget.checkpoints import dataset_of, network_of
from mnist_budget.errors import UserError
from mnist_budget.mnist_files import normalise
from mnist_budget.validate import positive_int

if TYPE_CHECKING:  # imported when serving starts: the other tasks need neither
    import uvicorn
    from fastapi import FastAPI

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
SETTINGS_ENV = "MNIST_BUDGET_SERVE_SETTINGS"


def check(cfg: DictConfig, run_dir: Path, multirun: bool) -> None:
    """A checkpoint whose network loads, a known backend, a port that can be bound, workers >= 1."""
    network_of(cfg)
    if str(cfg.backend) not in BACKENDS:
        raise UserError(f"backend={cfg.backend} is unknown: use {' or '.join(BACKENDS)}")
    if not (isinstance(cfg.port, int) and 0 < cfg.port < 65536):
        raise UserError(f"port={cfg.port!r} is invalid: it must be an integer from 1 to 65535")
    positive_int(cfg, "workers", "server processes")
    positive_int(cfg, "max_body_bytes", "the largest request accepted, in bytes")
    positive_int(cfg, "max_files", "images per request")
    check_can_listen(str(cfg.host), cfg.port)


def check_can_listen(host: str, port: int) -> None:
    """Bind the address once and let it go: a port in use or an unknown host is refused now, in one
    line, rather than by uvicorn after the network has been loaded (and exported)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
            probe.bind(address)
    except OSError as err:
        raise UserError(f"cannot listen on host={host} port={port} ({err.strerror or err}): pick another port= (or host=)") from err


def classifier(cfg: Any, threads: int | None = None) -> tuple:
    """The function from (N, 1, 28, 28) images in [0, 1] to class probabilities, on the chosen
    backend, and the model's name. ``threads``: torch / ONNX Runtime threads (default: torch's
    current count, which run.py has set)."""
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    net, hparams = network_of(cfg)
    name = hparams["model"]["name"]
    data = dataset_of(hparams)
    if cfg.backend == "onnx":
        from mnist_budget.tasks.export import export_onnx, onnx_runner

        path = Path(tempfile.mkdtemp()) / "model.onnx"
        export_onnx(net, path)
        run = onnx_runner(path, threads=threads)

        def classify(images: np.ndarray) -> np.ndarray:
            logits = run(normalise(images.astype(np.float32), data))
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            return exp / exp.sum(axis=1, keepdims=True)

        return classify, name

    @torch.inference_mode()
    def classify(images: np.ndarray) -> np.ndarray:
        return net(normalise(torch.from_numpy(images), data)).softmax(dim=1).numpy()

    return classify, name


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """What a server process needs, as plain values. Threads: ``threads`` if a number, else the
    cores shared out among the workers."""
    workers = int(cfg.workers)
    threads = int(cfg.threads) if str(cfg.get("threads", "auto")) != "auto" else max(1, torch.get_num_threads() // workers)
    return {"ckpt_path": str(cfg.ckpt_path), "backend": str(cfg.backend), "threads": threads,
            "max_body_bytes": int(cfg.max_body_bytes), "max_files": int(cfg.max_files),
            "unsure_below": float(cfg.unsure_below)}  # fmt: skip


def app_for(settings: dict[str, Any]) -> FastAPI:
    """The FastAPI application for these settings (``settings_of``)."""
    from mnist_budget.serving import Limits, create_app

    classify, name = classifier(OmegaConf.create(settings), threads=settings["threads"])
    limits = Limits(settings["max_body_bytes"], settings["max_files"])
    return create_app(classify, name, limits, settings["unsure_below"])


def app_from_settings() -> FastAPI:
    """uvicorn's factory in each worker process: the application for the settings file that
    ``MNIST_BUDGET_SERVE_SETTINGS`` names."""
    return app_for(json.loads(Path(os.environ[SETTINGS_ENV]).read_text()))


def serve(cfg: DictConfig) -> dict[str, float]:
    """Start the server on ``host:port`` until Ctrl-C (or SIGTERM)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    settings = settings_of(cfg)
    where = {"host": str(cfg.host), "port": int(cfg.port), "log_level": "warning"}
    log.info("serving %s (%s backend, %d worker(s) of %d thread(s)) on http://%s:%d/ (API: POST /predict, docs: /docs)",
             cfg.ckpt_path, cfg.backend, cfg.workers, settings["threads"], cfg.host, cfg.port)  # fmt: skip
    if int(cfg.workers) == 1:
        uvicorn.run(app_for(settings), **where)
        return {}
    path = Path(cfg.paths.output_dir) / "serve_settings.json"
    path.write_text(json.dumps(settings, indent=2) + "\n")
    os.environ[SETTINGS_ENV] = str(path)
    config = uvicorn.Config("mnist_budget.tasks.serve:app_from_settings", factory=True, workers=int(cfg.workers), **where)
    Multiprocess(config, sockets=[tcp_listener(config)]).run()  # uvicorn.run with workers > 1, on a TCP listener
    return {}


def tcp_listener(config: uvicorn.Config) -> socket.socket:
    """uvicorn's listening socket for its workers, marked as TCP.

    uvicorn 0.54 binds it with ``proto`` 0, so asyncio does not set TCP_NODELAY on the accepted
    connections, and every answer on a kept-alive connection waits ~40 ms for the client's delayed
    ACK (uvicorn issue #3149): 48 ms per request instead of 2.8 here. Re-wrapped with IPPROTO_TCP,
    the workers answer as fast as one process.
    """
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(True)
    return sock
