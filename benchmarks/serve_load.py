"""Load on ``task=serve``: N concurrent clients x M requests of one drawn digit, on this machine.

Starts the server (``python run.py task=serve``) on a free loopback port for each backend, sends
``--clients`` x ``--requests`` ``POST /predict`` requests (bounded in count, and in time by
``--seconds``), and prints requests/s, p50/p99 latency, errors and the server's memory growth,
with the hardware line. Only 127.0.0.1 is ever contacted.

    uv run python benchmarks/serve_load.py CKPT [--clients 8] [--requests 1250] [--backends onnx,torch] [--tta]
    uv run python benchmarks/serve_load.py CKPT --smoke
"""

from __future__ import annotations

import argparse
import http.client
import io
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_budget.hardware import describe, hardware_line

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def digit_png() -> bytes:
    """A drawn 7 as the page would send it: black strokes on white, 280x280."""
    canvas = np.full((280, 280), 255, np.uint8)
    canvas[50:75, 60:220] = 0
    for row in range(75, 240):
        col = 215 - (row - 75) * 100 // 165
        canvas[row, col - 12 : col + 12] = 0
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(png: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="digit.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def start_server(
    checkpoint: str, backend: str, port: int, threads: int, workers: int, tta: bool = False, run_dir: Path | None = None
) -> subprocess.Popen:
    """``task=serve`` on ``port``, once it answers ``GET /health``; its run folder ``run_dir`` (else outputs/serve_load/)."""
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        "task=serve",
        f"ckpt_path={checkpoint}",
        f"backend={backend}",
        f"port={port}",
        f"threads={threads}",
        f"workers={workers}",
        f"tta={str(tta).lower()}",
        f"hydra.run.dir={run_dir or ROOT / 'outputs' / 'serve_load' / backend}",
    ]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit(f"the server did not start: {server.stderr.read().decode()[-2000:]}")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (uvicorn's workers), in MB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_mb(int(child))
    return total


def load(port: int, clients: int, requests: int, seconds: float) -> dict[str, float]:
    body, kind = multipart(digit_png())
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(requests):
            if time.monotonic() > stop_at:
                return
            start = time.perf_counter()
            try:
                connection.request("POST", "/predict", body=body, headers={"Content-Type": kind})
                response = connection.getresponse()
                ok = response.status == 200 and b'"digit":' in response.read()  # answered (right or wrong)
            except OSError:
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok

    started = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": errors[0],
        "per_s": len(ordered) / wall,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1250, help="per client")
    parser.add_argument("--seconds", type=float, default=120.0, help="stop sending after this long")
    parser.add_argument("--backends", default="onnx,torch")
    parser.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads per server process")
    parser.add_argument("--workers", type=int, default=1, help="server processes (task=serve workers=N)")
    parser.add_argument("--tta", action="store_true", help="serve with test-time augmentation (task=serve tta=true)")
    parser.add_argument("--smoke", action="store_true", help="2 clients x 5 requests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.requests = 2, 5
    print(f"hardware: {hardware_line(describe('cpu'))}")
    for backend in args.backends.split(","):
        port = free_port()
        server = start_server(args.checkpoint, backend, port, args.threads, args.workers, args.tta)
        try:
            load(port, 2, 10, 30)  # warm-up
            before = rss_mb(server.pid)
            single = load(port, 1, 50 if not args.smoke else 3, 30)
            figures = load(port, args.clients, args.requests, args.seconds)
            growth = rss_mb(server.pid) - before
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(
            f"{backend:5s}{' +TTA' if args.tta else ''} ({args.workers} worker(s) x {args.threads} thread(s)): one client p50 {single['p50_ms']:.1f} ms; {args.clients} clients: {figures['per_s']:.0f} requests/s, "
            f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, {figures['errors']} errors of "
            f"{figures['requests']}, server memory {growth:+.1f} MB"
        )


if __name__ == "__main__":
    main()
