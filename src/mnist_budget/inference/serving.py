"""The HTTP service (``task=serve``): a page to draw a digit on, and ``POST /predict`` for files.

FastAPI on uvicorn: FastAPI validates and documents the API (OpenAPI at ``/docs``), uvicorn serves
it. Every image goes through the same preprocessing and the same inference path as
``task=predict`` (mnist_budget.data.preprocess.read_digit, then mnist_budget.inference.classify's
``Predictor``, with TTA when asked), and the answer includes the 28x28 image the network saw. A bad
request is a 4xx JSON error naming the problem; the server goes on.

One server process (``workers: 1``) holds the network and answers every request. With
``workers: N`` uvicorn starts N processes that share the port, each with its own copy of the
network: Python runs one request's Pillow/numpy work at a time per process, so on a machine with
several cores more workers answer more requests at once (docs/serving.md measures it). The
workers are separate interpreters, so the settings they need travel as a small JSON file named by
the ``MNIST_BUDGET_SERVE_SETTINGS`` environment variable (``app_from_settings`` reads it). Every
answer names the process that gave it in its ``X-Worker-Pid`` header.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from mnist_budget.checkpoints import dataset_of, load_network
from mnist_budget.data.preprocess import ImageProblem, read_digit
from mnist_budget.inference.classify import Predictor, answers
from mnist_budget.inference.export import export_onnx, onnx_runner
from mnist_budget.inference.web import page as draw_page_source

SETTINGS_ENV = "MNIST_BUDGET_SERVE_SETTINGS"
WORKER_HEADER = "X-Worker-Pid"


@dataclass(frozen=True)
class Limits:
    """What one request may hold (conf/task/serve.yaml sets them)."""

    max_body_bytes: int = 10 * 1024 * 1024
    max_files: int = 16


def seen_png(image: np.ndarray) -> str:
    """The 28x28 image the network saw, as a base64 PNG (white ink on black, as MNIST)."""
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.round(image * 255))).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def read_files(uploads: list[tuple[str, bytes]], predictor: Predictor, unsure_below: float) -> list[dict[str, Any]]:
    """One answer per file: digit, probability, whether that is unsure, top-3 and the image seen, or
    the problem."""
    answered: list[dict[str, Any]] = []
    images = []
    for name, data in uploads:
        try:
            images.append(read_digit(data))
            answered.append({"file": name, "error": None})
        except ImageProblem as problem:
            answered.append({"file": name, "error": str(problem)})
    if images:
        batch = torch.stack(images)
        readable = [answer for answer in answered if answer["error"] is None]
        for answer, image, reading in zip(readable, batch, answers(predictor(batch), unsure_below), strict=True):
            answer.update({**asdict(reading), "seen_28x28_png": seen_png(image[0].numpy())})
    return answered


def counted(request: Request, limit: int) -> Request:
    """The same request, its body counted as it arrives: reading past ``limit`` bytes raises a 413.

    The Content-Length check alone is not enough: a chunked upload declares no length, and Starlette
    limits the size of a form's text fields but not of its files.
    """
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise HTTPException(413, f"the body is over the limit of {limit:,} bytes")
        return message

    return Request(request.scope, receive)


class WorkerPid:
    """ASGI middleware: each response carries the answering process's id (``X-Worker-Pid``), so that
    a client (tests/test_serve.py) can tell which of the ``workers`` answered."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_pid(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                pid = (WORKER_HEADER.lower().encode(), str(os.getpid()).encode())
                message = {**message, "headers": [*message.get("headers", []), pid]}
            await send(message)

        await self.app(scope, receive, send_with_pid)


def create_app(predictor: Predictor, model: str, limits: Limits, unsure_below: float) -> FastAPI:
    """The FastAPI application: ``/`` (the page), ``/health``, ``POST /predict``, ``/docs``."""
    app = FastAPI(title="mnist-budget", description=f"Reads handwritten digits with {model}.")
    app.add_middleware(WorkerPid)
    page = draw_page_source()  # the same source as an exported web folder's index.html

    def problem(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def draw_page() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": model}

    @app.post("/predict", summary="Read the digit in each uploaded image (multipart field 'file', repeatable)")
    async def predict(request: Request) -> Any:
        kind = request.headers.get("content-type", "")
        if not kind.startswith("multipart/form-data"):
            return problem(
                415, f"content type {kind or 'none'!r}: send multipart/form-data with one or more 'file' fields"
            )
        declared = int(request.headers.get("content-length") or 0)
        if declared > limits.max_body_bytes:
            return problem(413, f"the body is {declared:,} bytes, over the limit of {limits.max_body_bytes:,}")
        try:
            form = await counted(request, limits.max_body_bytes).form(
                max_files=limits.max_files, max_part_size=limits.max_body_bytes
            )
        except (MultiPartException, HTTPException) as err:  # Starlette says "Too many files" with an HTTPException
            reason = getattr(err, "detail", None) or str(err)
            too_much = getattr(err, "status_code", None) == 413 or "Too many files" in reason
            return problem(413 if too_much else 400, f"the form cannot be read ({reason})")
        uploads = [value for value in form.getlist("file") if isinstance(value, UploadFile)]
        if not uploads:
            return problem(400, "no 'file' field in the form: send each image as a 'file' field")
        contents = [(upload.filename or "file", await upload.read()) for upload in uploads]
        answered = await run_in_threadpool(read_files, contents, predictor, unsure_below)
        if all(answer["error"] for answer in answered):
            return JSONResponse({"error": "no image could be read", "files": answered}, status_code=422)
        return {"model": model, "files": answered}

    return app


def predictor_for(settings: dict[str, Any]) -> tuple[Predictor, str]:
    """The checkpoint's network on the chosen backend as a ``Predictor``, and the model's name.
    ``threads``: torch / ONNX Runtime threads."""
    torch.set_num_threads(settings["threads"])
    net, hparams = load_network(settings["ckpt_path"])
    logits = net
    if settings["backend"] == "onnx":
        path = Path(tempfile.mkdtemp()) / "model.onnx"
        export_onnx(net, path)
        logits = onnx_runner(path, threads=settings["threads"])
    return Predictor(logits, dataset_of(hparams), tta=settings["tta"]), hparams["model"]["name"]


def settings_of(cfg: Any, cores: int) -> dict[str, Any]:
    """What a server process needs, as plain values. Threads: ``threads`` if a number, else the
    ``cores`` shared out among the workers."""
    workers = int(cfg.workers)
    threads = int(cfg.threads) if str(cfg.get("threads", "auto")) != "auto" else max(1, cores // workers)
    return {
        "ckpt_path": str(cfg.ckpt_path),
        "backend": str(cfg.backend),
        "threads": threads,
        "tta": bool(cfg.tta),
        "max_body_bytes": int(cfg.max_body_bytes),
        "max_files": int(cfg.max_files),
        "unsure_below": float(cfg.unsure_below),
    }


def app_for(settings: dict[str, Any]) -> FastAPI:
    """The FastAPI application for these settings (``settings_of``)."""
    predictor, name = predictor_for(settings)
    limits = Limits(settings["max_body_bytes"], settings["max_files"])
    return create_app(predictor, name, limits, settings["unsure_below"])


def app_from_settings() -> FastAPI:
    """uvicorn's factory in each worker process: the application for the settings file that
    ``MNIST_BUDGET_SERVE_SETTINGS`` names."""
    return app_for(json.loads(Path(os.environ[SETTINGS_ENV]).read_text()))


def tcp_listener(config: uvicorn.Config) -> socket.socket:
    """uvicorn's listening socket for its workers, marked as TCP.

    uvicorn binds it with ``proto`` 0, so asyncio does not set TCP_NODELAY on the accepted
    connections, and every answer on a kept-alive connection waits for the client's delayed ACK
    (uvicorn issue #3149; docs/serving.md has the measurement). Re-wrapped with IPPROTO_TCP, the
    workers answer as fast as one process.
    """
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(True)
    return sock
