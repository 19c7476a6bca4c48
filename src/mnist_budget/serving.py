"""The HTTP service (``task=serve``): a page to draw a digit on, and ``POST /predict`` for files.

FastAPI on uvicorn: FastAPI validates and documents the API (OpenAPI at ``/docs``), uvicorn serves
it. Every image goes through the same preprocessing as ``task=predict``
(mnist_budget.preprocess.read_digit: ``load_image`` then ``mnist_style``), and the answer includes the 28x28
image the network saw. A bad request is a 4xx JSON error naming the problem; the server goes on.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from mnist_budget.preprocess import ImageProblem, read_digit
from mnist_budget.tasks.predict import is_unsure


@dataclass(frozen=True)
class Limits:
    """What one request may hold (conf/task/serve.yaml sets them)."""

    max_body_bytes: int = 10 * 1024 * 1024
    max_files: int = 16


Classify = Callable[[np.ndarray], np.ndarray]  # (N, 1, 28, 28) images in [0, 1] -> (N, 10) probabilities


def seen_png(image: np.ndarray) -> str:
    """The 28x28 image the network saw, as a base64 PNG (white ink on black, as MNIST)."""
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.round(image * 255))).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def read_files(uploads: list[tuple[str, bytes]], classify: Classify, unsure_below: float) -> list[dict[str, Any]]:
    """One answer per file: digit, probability, whether that is unsure (``is_unsure``), top-3 and
    the image seen, or the problem."""
    answers: list[dict[str, Any]] = []
    images = []
    for name, data in uploads:
        try:
            images.append(read_digit(data).numpy())
            answers.append({"file": name, "error": None})
        except ImageProblem as problem:
            answers.append({"file": name, "error": str(problem)})
    if images:
        probabilities = classify(np.stack(images))
        readable = [answer for answer in answers if answer["error"] is None]
        for answer, image, probs in zip(readable, images, probabilities, strict=True):
            top3 = np.argsort(probs)[::-1][:3]
            answer.update({
                "digit": int(top3[0]), "probability": round(float(probs[top3[0]]), 4),
                "unsure": is_unsure(float(probs[top3[0]]), unsure_below),
                "top3": [[int(d), round(float(probs[d]), 4)] for d in top3], "seen_28x28_png": seen_png(image[0]),
            })  # fmt: skip
    return answers


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


def create_app(classify: Classify, model: str, limits: Limits, unsure_below: float) -> FastAPI:
    """The FastAPI application: ``/`` (the page), ``/health``, ``POST /predict``, ``/docs``."""
    app = FastAPI(title="mnist-budget", description=f"Reads handwritten digits with {model}.")
    page = files("mnist_budget").joinpath("static/draw.html").read_text(encoding="utf-8")

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
            return problem(415, f"content type {kind or 'none'!r}: send multipart/form-data with one or more 'file' fields")
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
        answers = await run_in_threadpool(read_files, contents, classify, unsure_below)
        if all(answer["error"] for answer in answers):
            return JSONResponse({"error": "no image could be read", "files": answers}, status_code=422)
        return {"model": model, "files": answers}

    return app
