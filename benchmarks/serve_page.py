"""The drawing page of ``task=serve`` in a real browser: from the end of a stroke to the digit shown.

Starts the server (``python run.py task=serve``) on a free loopback port, opens its page in headless
Chromium (Debian's ``chromium``, driven by Playwright; a 390x844 phone-sized viewport), draws the ten
digits as mouse strokes (each digit's first style in the handwriting benchmark, ``handwriting_styles.STYLES``)
``--rounds`` times, and prints how many were read right and the page's own latency of every stroke,
from its end to the result shown (``window.latenciesMs``: the canvas sent, the answer drawn): median,
90th percentile and max, with the hardware line. Only 127.0.0.1 is ever contacted.

tests/test_serve_page.py checks what the page shows against ``POST /predict``; this script measures it.

    uv run python benchmarks/serve_page.py CKPT [--rounds 5] [--backend onnx] [--workers 1] [--threads 1]
    uv run python benchmarks/serve_page.py CKPT --smoke
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from handwriting_styles import STYLES
from mnist_budget.hardware import describe, hardware_line
from serve_load import free_port, start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 390, "height": 844}  # a phone-sized screen

# Each digit's first (MNIST-like) style of stroke paths in a unit box.
STROKES = {digit: next(iter(styles.values())) for digit, styles in STYLES.items()}


def draw(page, digit: int) -> None:
    """Draw ``digit`` on the page's pad as a hand does: each stroke pressed, moved in small steps, released."""
    box = page.locator("#pad").bounding_box()
    for stroke in STROKES[digit]:
        points = [
            (box["x"] + box["width"] * (0.1 + 0.8 * x), box["y"] + box["height"] * (0.1 + 0.8 * y)) for x, y in stroke
        ]
        page.mouse.move(*points[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            for step in range(1, 9):  # a stroke is many small moves, as a hand makes them
                page.mouse.move(x0 + (x1 - x0) * step / 8, y0 + (y1 - y0) * step / 8)
        page.mouse.up()


def draw_and_wait(page, digit: int) -> str:
    """Clear the pad, draw ``digit`` and wait for every stroke's answer; the digit the page shows."""
    page.click("#clear")
    before = page.evaluate("window.predictions")
    draw(page, digit)
    page.wait_for_function(f"window.predictions >= {before + len(STROKES[digit])}", timeout=10_000)
    return page.inner_text("#digit")


def measure(port: int, rounds: int, digits: list[int]) -> tuple[int, int, list[float]]:
    """Draw ``digits`` ``rounds`` times on the page at ``port``: (read right, drawn, every stroke's latency in ms)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"http://127.0.0.1:{port}/")
        draw_and_wait(page, digits[0])  # warm-up: the first answer loads the browser's and the server's code paths
        page.evaluate("window.latenciesMs = []")
        right = sum(draw_and_wait(page, digit) == str(digit) for _ in range(rounds) for digit in digits)
        latencies = page.evaluate("window.latenciesMs")
        browser.close()
    return right, rounds * len(digits), latencies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--rounds", type=int, default=5, help="times the ten digits are drawn")
    parser.add_argument("--backend", default="onnx", help="task=serve backend (onnx, as conf/task/serve.yaml; torch)")
    parser.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads per server process")
    parser.add_argument("--workers", type=int, default=1, help="server processes (task=serve workers=N)")
    parser.add_argument("--smoke", action="store_true", help="one round of two digits (seconds, figures meaningless)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"error: no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    rounds, digits = (1, [1, 7]) if args.smoke else (args.rounds, list(range(10)))
    print(f"hardware: {hardware_line(describe('cpu'))}")
    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="serve-page-"))
    server = start_server(args.checkpoint, args.backend, port, args.threads, args.workers, run_dir=run_dir)
    try:
        right, drawn, latencies = measure(port, rounds, digits)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(run_dir, ignore_errors=True)
    ordered = sorted(latencies)
    print(
        f"page ({args.backend}, {args.workers} worker(s) x {args.threads} thread(s), headless Chromium "
        f"{VIEWPORT['width']}x{VIEWPORT['height']}): {right} of {drawn} drawn digits read right; "
        f"stroke end -> result shown ({len(ordered)} strokes): median {statistics.median(ordered):.1f} ms, "
        f"p90 {ordered[int(0.9 * (len(ordered) - 1))]:.1f} ms, max {ordered[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
