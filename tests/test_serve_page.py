"""The drawing page in a real browser: headless Chromium (Debian's package, driven by Playwright)
draws digits as mouse strokes; the page must show what the API returns for the same canvas image,
and a model trained on MNIST must read most of the drawn digits right. How fast the page answers is a
figure that benchmarks/serve_page.py prints (its smoke run is here: it draws as this test does)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from conftest import compose_cfg, unavailable
from test_benchmarks import load_benchmark
from test_serve import call, form, server_process

pytestmark = pytest.mark.slow
PAGE = load_benchmark("serve_page")
# Debian's chromium, each digit's stroke paths (the handwriting benchmark's first style) and the hand
# that draws them: the benchmark's, which tests/test_web_export.py uses too.
CHROMIUM, STROKES, draw = PAGE.CHROMIUM, PAGE.STROKES, PAGE.draw


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        unavailable(f"Debian's chromium is not installed at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory) -> Path:
    """A default model trained for two epochs on the real MNIST (the slow suite has it)."""
    from mnist_budget.tasks.train import train
    from test_slow import real_data_dir

    run = tmp_path_factory.mktemp("mnist-model")
    train(compose_cfg(run, real_data_dir(), "trainer.max_epochs=2"))
    return run / "checkpoints" / "last.ckpt"


def test_drawn_digits_are_shown_as_the_api_reads_them(mnist_model, tmp_path_factory):
    need_chromium()
    from playwright.sync_api import sync_playwright

    with server_process(mnist_model, tmp_path_factory.mktemp("serve-page")) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport=PAGE.VIEWPORT)  # a phone-sized screen
        page.goto(f"http://127.0.0.1:{port}/")
        right = 0
        for digit in range(10):
            shown = PAGE.draw_and_wait(page, digit)  # every stroke answered
            canvas = base64.b64decode(
                page.evaluate("document.getElementById('pad').toDataURL('image/png')").split(",")[1]
            )
            status, answer = call(port, "POST", "/predict", *form(("file", "canvas.png", canvas)))
            assert status == 200 and shown == str(answer["files"][0]["digit"]), (digit, shown, answer)
            assert page.get_attribute("#seen", "src").startswith("data:image/png;base64,")
            right += shown == str(digit)
            if digit == 7:
                page.screenshot(path=str(tmp_path_factory.getbasetemp() / "serve_page.png"))
        browser.close()
    print(f"\nbrowser: {right} of 10 drawn digits read right (how fast: benchmarks/serve_page.py)")
    assert right >= 6


def test_the_page_benchmark_runs_and_prints_its_figures(trained_run, capsys):
    need_chromium()
    PAGE.main([str(trained_run / "checkpoints" / "last.ckpt"), "--smoke", "--backend", "torch"])
    out = capsys.readouterr().out
    assert re.search(r"^hardware: .+ threads, torch \S+$", out, re.M), out
    strokes = len(STROKES[1]) + len(STROKES[7])  # the smoke run draws a 1 and a 7: every stroke is timed
    assert re.search(
        r"^page \(torch, 1 worker\(s\) x 1 thread\(s\), headless Chromium 390x844\): [0-2] of 2 drawn digits read "
        rf"right; stroke end -> result shown \({strokes} strokes\): median [\d.]+ ms, p90 [\d.]+ ms, max [\d.]+ ms$",
        out,
        re.M,
    ), out
