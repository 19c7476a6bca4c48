"""``task=export format=web``: a folder that reads digits in any browser with no server, from a static host or
from disk (file://).

The folder holds ``index.html`` (the serve page, static/draw.html, with the in-page reader's scripts at its
marker: one page source for both), ``in_page.js`` (the preprocessing of mnist_budget.data.preprocess.mnist_style
and ONNX Runtime Web), ``model.onnx`` and its ``model.onnx.json`` (normalisation, classes, the unsure threshold),
``model.js`` (the same metadata and model for the page) and ``ort/`` (the runtime). A page opened from disk may
not fetch() files in Chromium, so everything the page needs arrives through <script> tags: the model as
base64, the runtime's WebAssembly gzipped and base64 (the page unpacks it with the browser's
DecompressionStream), its module loader as text. Nothing comes from a CDN when the page loads.

The runtime is npm's ``onnxruntime-web``, fetched once from the npm registry (its tarball over HTTPS, checked
against the registry's sha512) into ``<data_dir>/onnxruntime-web/<version>/``, as the handwriting fonts are
(mnist_budget.data.font_digits). Offline, the npm tarball put into ``<data_dir>/onnxruntime-web/`` is used.
Light on purpose (no torch): the preflight checks the runtime with ``check_runtime``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import tarfile
import urllib.parse
import urllib.request
from importlib.resources import files
from pathlib import Path
from typing import Any

from mnist_budget.data.sets import download_problem
from mnist_budget.errors import UserError, first_line
from mnist_budget.files import write_atomically

PACKAGE = "onnxruntime-web"
# The single-threaded CPU build: its classic-script API, the module that loads its WebAssembly, and that.
SCRIPT, LOADER, WASM = "ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"
RUNTIME_FILES = (SCRIPT, LOADER, WASM)
MARKER = "<!-- in-page reader: task=export format=web puts its scripts here -->"
PAGE_SCRIPTS = ("model.js", f"ort/{SCRIPT}", "ort/runtime.js", "in_page.js")  # in the order they must run


def cache_folder(data_dir: str | Path) -> Path:
    return Path(data_dir) / PACKAGE


def tarball_name(version: str) -> str:
    return f"{PACKAGE}-{version}.tgz"  # what `npm pack onnxruntime-web@<version>` writes


def runtime_folder(data_dir: str | Path, version: str) -> Path:
    return cache_folder(data_dir) / version


def is_cached(data_dir: str | Path, version: str) -> bool:
    return all((runtime_folder(data_dir, version) / name).is_file() for name in RUNTIME_FILES)


def how_to_provide(data_dir: str | Path, version: str) -> str:
    return (
        f"put {tarball_name(version)} (`npm pack {PACKAGE}@{version}` on a machine with internet) into "
        f"{cache_folder(data_dir)}, or run once where the npm registry can be reached"
    )


def check_runtime(data_dir: str | Path, version: str, registry: str) -> None:
    """Refuse now (the preflight calls this) an export that could not get the runtime: not cached, no
    tarball put beside the cache, and the registry cannot be reached."""
    if is_cached(data_dir, version) or (cache_folder(data_dir) / tarball_name(version)).is_file():
        return
    host = urllib.parse.urlsplit(registry).hostname or registry
    problem = download_problem(host)
    if problem:
        raise UserError(
            f"ONNX Runtime Web {version} is not in {runtime_folder(data_dir, version)} and the npm registry "
            f"{registry} cannot be reached ({problem}): {how_to_provide(data_dir, version)}"
        )


def download_tarball(version: str, registry: str, data_dir: str | Path) -> bytes:
    """The package's tarball from the registry, checked against the sha512 the registry publishes for it."""
    url = f"{registry.rstrip('/')}/{PACKAGE}/{version}"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            dist = json.loads(response.read())["dist"]
        with urllib.request.urlopen(dist["tarball"], timeout=300) as response:
            data = response.read()
    except (OSError, http.client.HTTPException, ValueError, KeyError) as err:
        raise UserError(
            f"ONNX Runtime Web {version} could not be downloaded ({first_line(err)}, {url}): "
            f"{how_to_provide(data_dir, version)}"
        ) from err
    algorithm, _, expected = str(dist.get("integrity", "")).partition("-")
    if algorithm != "sha512" or base64.b64decode(expected) != hashlib.sha512(data).digest():
        raise UserError(
            f"the downloaded {tarball_name(version)} does not match the registry's sha512: run again, or "
            f"{how_to_provide(data_dir, version)}"
        )
    return data


def unpack_runtime(tarball: bytes, version: str, folder: Path, source: str) -> None:
    """Keep the runtime's files from an npm tarball of ``onnxruntime-web`` (``source`` names it for messages)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            found = json.loads(archive.extractfile("package/package.json").read())  # type: ignore[union-attr]
            if found.get("name") != PACKAGE or found.get("version") != version:
                raise UserError(
                    f"{source} holds {found.get('name')} {found.get('version')}, not {PACKAGE} {version}: "
                    f"replace it with {tarball_name(version)}, or set web.ort_version={found.get('version')}"
                )
            contents = {name: archive.extractfile(f"package/dist/{name}") for name in RUNTIME_FILES}
            if any(member is None for member in contents.values()):
                raise KeyError("a runtime file is not a file")
            data = {name: member.read() for name, member in contents.items()}  # type: ignore[union-attr]
    except (tarfile.TarError, KeyError, AttributeError, OSError, EOFError, ValueError) as err:
        raise UserError(
            f"{source} is not an npm tarball of {PACKAGE} {version} with {', '.join(RUNTIME_FILES)} "
            f"({first_line(err)}): delete it and run again, or replace it with {tarball_name(version)}"
        ) from err
    for name, content in data.items():  # each whole or not at all: a cache missing one is unpacked again
        write_atomically(folder / name, content)


def fetch_runtime(data_dir: str | Path, version: str, registry: str) -> Path:
    """The folder that holds the runtime's files: cached, or unpacked from a tarball put beside the cache,
    or downloaded once."""
    folder = runtime_folder(data_dir, version)
    if is_cached(data_dir, version):
        return folder
    tarball = cache_folder(data_dir) / tarball_name(version)
    if tarball.is_file():
        unpack_runtime(tarball.read_bytes(), version, folder, str(tarball))
    else:
        unpack_runtime(download_tarball(version, registry, data_dir), version, folder, f"{registry}'s {PACKAGE}")
    return folder


def script_assigning(name: str, value: Any) -> str:
    """A classic script that sets ``window.<name>`` (loaded by a <script> tag, so it works from file://)."""
    return f"window.{name} = {json.dumps(value, separators=(',', ':'))};\n"


def page() -> str:
    """The serve page's source (static/draw.html)."""
    return files("mnist_budget.inference").joinpath("static/draw.html").read_text(encoding="utf-8")


def web_page() -> str:
    """index.html: the serve page with the in-page reader's scripts at its marker."""
    source = page()
    if source.count(MARKER) != 1:
        raise RuntimeError(f"static/draw.html must hold the marker {MARKER!r} once")  # a broken package, not input
    tags = "\n".join(f'<script src="{script}"></script>' for script in PAGE_SCRIPTS)
    return source.replace(MARKER, tags)


def write_web_folder(folder: Path, onnx: Path, metadata: dict[str, Any], runtime: Path, version: str) -> None:
    """The page, its reader, the model's page script and the runtime into ``folder`` (``onnx`` and its
    JSON are already there)."""
    write_atomically(folder / "index.html", web_page())
    reader = files("mnist_budget.inference").joinpath("static/in_page.js").read_text(encoding="utf-8")
    write_atomically(folder / "in_page.js", reader)
    model = {"metadata": metadata, "onnx": base64.b64encode(onnx.read_bytes()).decode("ascii")}
    write_atomically(folder / "model.js", script_assigning("MNIST_BUDGET_MODEL", model))
    wasm = gzip.compress((runtime / WASM).read_bytes(), compresslevel=9, mtime=0)
    bundle = {
        "package": f"{PACKAGE}@{version}",
        "loader": (runtime / LOADER).read_text(encoding="utf-8"),
        "wasm_gzip_base64": base64.b64encode(wasm).decode("ascii"),
    }
    write_atomically(folder / "ort" / "runtime.js", script_assigning("MNIST_BUDGET_RUNTIME", bundle))
    write_atomically(folder / "ort" / SCRIPT, (runtime / SCRIPT).read_bytes())
    write_atomically(
        folder / "ort" / "README.txt",
        f"ONNX Runtime Web ({PACKAGE} {version} from the npm registry; MIT License, Copyright (c) Microsoft "
        f"Corporation): {SCRIPT} as published; runtime.js holds its {LOADER} and its {WASM} (gzipped, base64), "
        "so that the page works from disk too.\n",
    )
