"""``task=export format=web``: the folder's parts without a browser (quick), then the folder drawn on in
Chromium from a static file server and from disk, against the server's POST /predict (slow)."""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import http.server
import io
import json
import re
import statistics
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import compose_cfg, preflight_refusal
from mnist_budget.errors import UserError
from mnist_budget.inference import web
from test_serve_page import CHROMIUM, STROKES, draw, mnist_model  # noqa: F401 - mnist_model: the fixture, reused

VERSION = "1.30.0"  # conf/task/export.yaml's web.ort_version


def npm_tarball(
    version: str = VERSION, name: str = "onnxruntime-web", files: tuple[str, ...] = web.RUNTIME_FILES
) -> bytes:
    """An npm tarball as `npm pack` writes one: package/package.json and the runtime files under package/dist/."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        members = {"package/package.json": json.dumps({"name": name, "version": version}).encode()}
        members |= {f"package/dist/{file}": f"contents of {file}".encode() * 50 for file in files}
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def script_value(path: Path) -> dict:
    """The JSON that a generated ``window.X = {...};`` script assigns."""
    text = path.read_text()
    assert text.startswith("window.") and text.endswith(";\n"), text[:80]
    return json.loads(text.partition(" = ")[2][:-2])


def test_the_runtime_comes_from_an_npm_tarball_put_beside_the_cache_and_is_kept(tmp_path):
    (tmp_path / "onnxruntime-web").mkdir()
    (tmp_path / "onnxruntime-web" / f"onnxruntime-web-{VERSION}.tgz").write_bytes(npm_tarball())
    unreachable = "https://127.0.0.1"  # nothing answers HTTPS here: a download would fail
    web.check_runtime(tmp_path, VERSION, unreachable)
    folder = web.fetch_runtime(tmp_path, VERSION, unreachable)
    assert sorted(p.name for p in folder.iterdir()) == sorted(web.RUNTIME_FILES)
    assert (folder / web.WASM).read_bytes() == f"contents of {web.WASM}".encode() * 50
    (tmp_path / "onnxruntime-web" / f"onnxruntime-web-{VERSION}.tgz").unlink()
    assert web.fetch_runtime(tmp_path, VERSION, unreachable) == folder  # the cache alone is enough now


@pytest.mark.parametrize(
    ("tarball", "fragment"),
    [
        (npm_tarball(version="1.29.0"), "holds onnxruntime-web 1.29.0, not onnxruntime-web 1.30.0"),
        (npm_tarball(files=(web.SCRIPT,)), "is not an npm tarball of onnxruntime-web 1.30.0"),
        (b"not a tarball", "is not an npm tarball of onnxruntime-web 1.30.0"),
    ],
    ids=["other-version", "files-missing", "not-a-tarball"],
)
def test_a_wrong_tarball_is_refused_in_one_line_and_nothing_is_cached(tmp_path, tarball, fragment):
    (tmp_path / "onnxruntime-web").mkdir()
    (tmp_path / "onnxruntime-web" / f"onnxruntime-web-{VERSION}.tgz").write_bytes(tarball)
    with pytest.raises(UserError, match=fragment) as refused:
        web.fetch_runtime(tmp_path, VERSION, "https://127.0.0.1")
    assert "\n" not in str(refused.value)
    assert not web.is_cached(tmp_path, VERSION)


def test_offline_without_the_runtime_the_preflight_says_how_to_provide_it(mnist_root, tmp_path):
    line = preflight_refusal(
        "task=export",
        "format=web",
        "ckpt_path=any.ckpt",
        "web.registry=https://127.0.0.1",
        run_dir=tmp_path / "run",
        data_dir=mnist_root,
    )
    assert f"ONNX Runtime Web {VERSION} is not in" in line and "cannot be reached" in line
    assert f"npm pack onnxruntime-web@{VERSION}" in line and str(mnist_root / "onnxruntime-web") in line
    assert not (tmp_path / "run").exists()


def test_the_web_page_is_the_serve_page_with_the_reader_scripts_at_its_marker():
    source = web.page()
    assert source.count(web.MARKER) == 1
    index = web.web_page()
    assert web.MARKER not in index
    tags = [f'<script src="{script}"></script>' for script in web.PAGE_SCRIPTS]
    positions = [index.index(tag) for tag in tags]
    assert positions == sorted(positions) and positions[-1] < index.index('"use strict";\nconst pad')
    before, _, after = source.partition(web.MARKER)
    assert index.startswith(before) and index.endswith(after)  # nothing else differs from the served page
    assert 'id="digit"' in index
    assert not re.search(r'(src|href)="(https?:)?//', index)  # no CDN: everything from the folder


def test_the_folder_holds_the_model_and_runtime_as_scripts_a_page_from_disk_can_load(tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    wasm = bytes(range(256)) * 300
    (runtime / web.WASM).write_bytes(wasm)
    (runtime / web.LOADER).write_text("export default async function factory() {}\n")
    (runtime / web.SCRIPT).write_text("var ort = {};\n")
    folder = tmp_path / "web"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"\x08\x0aonnx bytes")
    metadata = {"normalisation": {"mean": 0.1307, "std": 0.3081}, "unsure_below": 0.8}
    web.write_web_folder(folder, folder / "model.onnx", metadata, runtime, VERSION)
    model = script_value(folder / "model.js")
    assert model["metadata"] == metadata and base64.b64decode(model["onnx"]) == b"\x08\x0aonnx bytes"
    bundle = script_value(folder / "ort" / "runtime.js")
    assert gzip.decompress(base64.b64decode(bundle["wasm_gzip_base64"])) == wasm
    assert bundle["loader"] == (runtime / web.LOADER).read_text() and bundle["package"] == f"onnxruntime-web@{VERSION}"
    assert (folder / "ort" / web.SCRIPT).read_text() == "var ort = {};\n"
    assert (folder / "index.html").read_text() == web.web_page()
    assert "function mnistStyle" in (folder / "in_page.js").read_text()


# In Chromium (slow) -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def static_server(folder: Path):
    """Python's own static file server on a free loopback port (not this project's server)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join()


def png_pixels(data: str) -> np.ndarray:
    """A base64 PNG (a data: URL's or the API's) as grey levels."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data.split(",")[-1]))).convert("L"), dtype=np.int16)


def thin_pen_images(count: int) -> list[Image.Image]:
    """Digit-like scribbles with pens from 2 to 6 px on 280x280 paper, to exercise mnist_style's thickening."""
    rng = np.random.default_rng(0)
    images = []
    for index in range(count):
        image = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
        points = [tuple(int(v) for v in rng.integers(30, 250, 2)) for _ in range(4)]
        ImageDraw.Draw(image).line(points, fill=(0, 0, 0, 255), width=2 + index % 5, joint="curve")
        images.append(image)
    return images


@pytest.fixture(scope="module")
def web_data(tmp_path_factory) -> Path:
    """A data folder of the test's own: the real MNIST (linked), and room for ONNX Runtime Web, which the
    export fetches from the npm registry (skipped where the registry cannot be reached)."""
    from test_slow import real_data_dir

    data = tmp_path_factory.mktemp("web-data")
    (data / "MNIST").symlink_to(Path(real_data_dir()).resolve() / "MNIST", target_is_directory=True)
    try:
        web.check_runtime(data, VERSION, "https://registry.npmjs.org")
    except UserError as err:
        pytest.skip(str(err))
    return data


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_exported_page_reads_as_the_server_does_from_a_static_host_and_from_disk(
    tmp_path_factory,
    web_data,
    mnist_model,  # noqa: F811 - test_serve_page's fixture, imported above
):
    playwright = pytest.importorskip("playwright.sync_api")
    from mnist_budget.tasks.export import export
    from test_serve import call, form, server_process

    checkpoint = mnist_model
    out = tmp_path_factory.mktemp("export-web")
    export(compose_cfg(out, web_data, "task=export", "format=web", f"ckpt_path={checkpoint}"))
    folder = out / "web"
    size = sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())
    assert (folder / "README.md").read_text().startswith("---\n")

    with (
        static_server(folder) as static_port,
        server_process(checkpoint, tmp_path_factory.mktemp("serve-web")) as api_port,
        playwright.sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        loads = []
        for _ in range(5):  # page load -> the network's first answer, on fresh pages
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(f"http://127.0.0.1:{static_port}/index.html")
            page.wait_for_function("window.readyMs !== undefined", timeout=60_000)
            loads.append(page.evaluate("window.readyMs"))
            page.close()
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(f"http://127.0.0.1:{static_port}/index.html")
        page.wait_for_function("window.readyMs !== undefined", timeout=60_000)
        same, right, largest = 0, 0, 0
        for digit in range(10):
            page.click("#clear")
            before = page.evaluate("window.predictions")
            draw(page, digit)
            page.wait_for_function(f"window.predictions >= {before + len(STROKES[digit])}", timeout=10_000)
            shown = page.inner_text("#digit")
            canvas = base64.b64decode(
                page.evaluate("document.getElementById('pad').toDataURL('image/png')").split(",")[1]
            )
            status, answer = call(api_port, "POST", "/predict", *form(("file", "canvas.png", canvas)))
            assert status == 200, answer
            served = answer["files"][0]
            same += shown == str(served["digit"])
            right += shown == str(digit)
            difference = np.abs(png_pixels(page.get_attribute("#seen", "src")) - png_pixels(served["seen_28x28_png"]))
            largest = max(largest, int(difference.max()))
        latencies = page.evaluate("window.latenciesMs")

        # The reader's preprocessing alone, on thin pens (which mnist_style thickens) against the Python one.
        from mnist_budget.data.preprocess import mnist_style

        thin = 0
        for image in thin_pen_images(10):
            pixels = np.asarray(image).reshape(-1).tolist()
            js = page.evaluate(
                "([p, w, h]) => Array.from(window.mnistBudgetReader.mnistStyle(p, w, h))", [pixels, 280, 280]
            )
            py = mnist_style(image)[0].numpy().reshape(-1)
            thin = max(thin, float(np.abs(np.asarray(js, dtype=np.float32) - py).max()))

        disk = browser.new_page(viewport={"width": 390, "height": 844})
        disk.goto((folder / "index.html").as_uri())
        disk.wait_for_function("window.readyMs !== undefined", timeout=60_000)
        draw(disk, 7)
        disk.wait_for_function(f"window.predictions >= {len(STROKES[7])}", timeout=10_000)
        canvas = base64.b64decode(disk.evaluate("document.getElementById('pad').toDataURL('image/png')").split(",")[1])
        _, answer = call(api_port, "POST", "/predict", *form(("file", "canvas.png", canvas)))
        from_disk = disk.inner_text("#digit")
        browser.close()

    print(
        f"\nweb export: {size:,} bytes in {folder.name}/; {same} of 10 drawn digits read as POST /predict reads them, "
        f"{right} of 10 right; largest 28x28 difference {largest} of 255 (thin pens, preprocessing alone: "
        f"{255 * thin:.0f}); page load -> first answer: median {statistics.median(loads):.0f} ms, max {max(loads):.0f} ms; "
        f"stroke end -> answer ({len(latencies)} strokes): median {statistics.median(latencies):.1f} ms, "
        f"max {max(latencies):.1f} ms; from disk: {from_disk} (server {answer['files'][0]['digit']})"
    )
    assert same >= 9
    assert largest <= 3 and 255 * thin <= 3
    assert from_disk == str(answer["files"][0]["digit"])
