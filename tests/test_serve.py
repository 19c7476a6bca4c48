"""``task=serve`` against a real server process on a free loopback port: good images, each bad
request (a 4xx naming the problem, and the server stays up), concurrent requests, the page."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import ROOT
from mnist_budget.inference.serving import WORKER_HEADER
from test_tasks import as_photo, mnist_seven

pytestmark = pytest.mark.slow  # a server process that imports torch: seconds to start


def form(*parts: tuple[str, str, bytes], boundary: str = "b0undary") -> tuple[bytes, dict[str, str]]:
    """A multipart body of (field, filename, content) parts and its headers."""
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n\r\n'.encode()
            + data
            + b"\r\n"
            for field, name, data in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def server_process(checkpoint: Path, run: Path, *overrides: str):
    """``python run.py task=serve`` on a free loopback port, until the block ends; yields the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        "task=serve",
        f"ckpt_path={checkpoint}",
        f"port={port}",
        "backend=torch",
        *overrides,
        f"hydra.run.dir={run}",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if call(port, "GET", "/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.3)
    assert process.poll() is None, process.stderr.read()[-3000:]
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory):
    with server_process(
        trained_run / "checkpoints" / "last.ckpt",
        tmp_path_factory.mktemp("serve"),
        "max_files=4",
        "max_body_bytes=200000",
    ) as port:
        yield port


def answer(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict | str, int]:
    """A request's status, its JSON (or text) and the id of the server process that answered (X-Worker-Pid)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    text = response.read().decode()
    kind = response.getheader("content-type", "")
    return (
        response.status,
        json.loads(text) if kind.startswith("application/json") else text,
        int(response.getheader(WORKER_HEADER, "0")),
    )


def call(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict | str]:
    return answer(port, method, path, body, headers)[:2]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_good_images_are_read_with_top3_and_the_image_seen(server):
    seven = mnist_seven()
    body, headers = form(
        ("file", "a.png", png(Image.fromarray(seven))), ("file", "b.jpg", png(as_photo(seven, 200, (10, 40))))
    )
    status, answer = call(server, "POST", "/predict", body, headers)
    assert status == 200 and [f["file"] for f in answer["files"]] == ["a.png", "b.jpg"]
    for file in answer["files"]:
        assert file["error"] is None and file["digit"] == file["top3"][0][0] and len(file["top3"]) == 3
        assert file["probability"] == file["top3"][0][1]
        if abs(file["probability"] - 0.8) > 1e-4:  # (the answer's probability is rounded to 4 places)
            assert file["unsure"] == (file["probability"] < 0.8)  # unsure_below in conf/config.yaml
        assert Image.open(io.BytesIO(base64.b64decode(file["seen_28x28_png"]))).size == (28, 28)


@pytest.mark.parametrize(
    ("request_parts", "status", "fragment"),
    [
        ((("file", "notes.png", b"just text"),), 422, "not an image Pillow can open"),
        ((("file", "empty.png", b""),), 422, "empty file"),
        ((("other", "x.png", b"x"),), 400, "no 'file' field"),
        (tuple(("file", f"{i}.png", b"x") for i in range(5)), 413, "Too many files"),
        ((("file", "big.png", b"0" * 300_000),), 413, "over the limit of 200,000"),
    ],
    ids=["not-an-image", "empty", "no-file-field", "too-many-files", "too-big"],
)
def test_bad_requests_get_a_4xx_naming_the_problem(server, request_parts, status, fragment):
    body, headers = form(*request_parts)
    got, answer = call(server, "POST", "/predict", body, headers)
    assert got == status and fragment in json.dumps(answer), answer
    assert call(server, "GET", "/health")[0] == 200  # still up


def test_a_chunked_body_without_a_length_is_counted_against_the_limit(server):
    """A chunked upload declares no Content-Length: the server counts what arrives instead."""
    body, headers = form(("file", "big.png", b"0" * 300_000))
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    chunks = (body[start : start + 16_384] for start in range(0, len(body), 16_384))
    connection.request("POST", "/predict", body=chunks, headers=headers, encode_chunked=True)
    response = connection.getresponse()
    answer = json.loads(response.read().decode())
    assert response.status == 413 and "over the limit of 200,000 bytes" in answer["error"], answer
    assert call(server, "GET", "/health")[0] == 200  # still up


def test_wrong_content_type_and_empty_body(server):
    status, answer = call(server, "POST", "/predict", b'{"image": 1}', {"Content-Type": "application/json"})
    assert status == 415 and "multipart/form-data" in answer["error"]
    status, answer = call(server, "POST", "/predict", b"", {"Content-Type": "multipart/form-data; boundary=x"})
    assert 400 <= status < 500


def test_concurrent_requests_all_answered(server):
    body, headers = form(("file", "seven.png", png(Image.fromarray(mnist_seven()))))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: call(server, "POST", "/predict", body, headers), range(40)))
    assert all(status == 200 for status, _ in answers)
    assert len({answer["files"][0]["digit"] for _, answer in answers}) == 1  # the same image, the same answer


def test_the_page_and_the_openapi_description_are_served(server):
    status, page = call(server, "GET", "/")
    assert status == 200 and "<canvas" in page and "http" not in page.split("<script>")[1]  # no CDN: all inline
    status, schema = call(server, "GET", "/openapi.json")
    assert status == 200 and "/predict" in schema["paths"]


def test_two_workers_share_the_port_each_answers_as_one_process_does(server, trained_run, tmp_path):
    seven = form(("file", "seven.png", png(Image.fromarray(mnist_seven()))))
    alone = call(server, "POST", "/predict", *seven)[1]["files"][0]
    too_many = form(*(("file", f"{i}.png", b"x") for i in range(5)))

    def until_both_answer(port: int, request: tuple[bytes, dict]) -> list[tuple[int, dict, int]]:
        """Rounds of 20 requests, 4 at a time, until two processes have answered (or a minute has passed)."""
        answers, deadline = [], time.monotonic() + 60
        with ThreadPoolExecutor(4) as pool:
            while len({pid for *_, pid in answers}) < 2 and time.monotonic() < deadline:
                answers += pool.map(lambda _: answer(port, "POST", "/predict", *request), range(20))
        return answers

    with server_process(trained_run / "checkpoints" / "last.ckpt", tmp_path, "workers=2", "max_files=4") as port:
        answers = until_both_answer(port, seven)
        workers = {pid for *_, pid in answers}
        assert len(workers) == 2, f"one process answered all {len(answers)} requests: {workers}"
        # Two worker processes of the one server: children of the process that run.py started.
        (server_pid,) = {parent_of(pid) for pid in workers}
        command = Path(f"/proc/{server_pid}/cmdline").read_bytes().split(b"\0")
        assert b"task=serve" in command and f"port={port}".encode() in command and server_pid not in workers
        assert {status for status, *_ in answers} == {200}
        assert all(got["files"][0] == alone for _, got, _ in answers)  # same digit, probabilities, image seen
        refused = until_both_answer(port, too_many)
        assert {pid for *_, pid in refused} == workers  # both workers hold the limits
        assert {status for status, *_ in refused} == {413}
        settings = json.loads((tmp_path / "serve_settings.json").read_text())  # what each worker read
        assert settings["max_files"] == 4 and settings["threads"] == max(1, torch.get_num_threads() // 2)
    print(f"\nworkers=2: {len(answers)} answers from processes {sorted(workers)} of server {server_pid}")
