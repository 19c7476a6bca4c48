#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what benchmarks/gpu_check.sh needs on a device machine that reaches no
# package registry and whose python3 (3.12) already has torch, torchvision, lightning, torchmetrics,
# numpy, scipy, matplotlib, tensorboard and the like (docs/gpu.md):
# - wheels of the packages the project needs (pyproject.toml's dependencies and what they need in turn)
#   that such a machine lacks: hydra-core, omegaconf, kornia, the Hydra plugins and the rest, at the
#   versions of this checkout's environment (uv.lock), for CPython 3.12 on x86-64 Linux;
# - this package's own wheel;
# - MNIST's four files, gzipped, in .whl/data/MNIST/raw/ (gpu_check.sh reads them there).
# Run it here, where pip reaches PyPI, after `uv sync`; then carry .whl with the device call (it prints its size).
#
#   bash benchmarks/prepare_gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WHL=.whl
rm -rf "$WHL"
mkdir -p "$WHL"

# The distributions to carry, name==version, one a line: the closure of pyproject.toml's dependencies over
# their requirements (markers read as CPython 3.12 on Linux), less what the device image has (DEVICE_HAS:
# its package list, as the device tool's KINDS.md gives it).
uv run --no-sync python - >"$WHL/requirements.txt" <<'EOF'
import importlib.metadata as metadata
import re
import tomllib

from packaging.markers import default_environment
from packaging.requirements import Requirement

DEVICE_HAS = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cycler cython filelock flatbuffers
fonttools fsspec grpcio h11 h5py httpcore httpx huggingface-hub idna imageio iniconfig jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities markdown markdown-it-py markupsafe matplotlib mdurl ml-dtypes mpmath
msgpack multidict networkx ninja numpy onnx onnx-ir onnxruntime onnxscript opencv-python-headless packaging pandas
pathspec pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 pygments
pyparsing pytest pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich safetensors scikit-learn
scipy setuptools six sympy tabulate tensorboard tensorboard-data-server threadpoolctl tifffile torch torchaudio
torchmetrics torchvision tqdm triton typing-extensions typing-inspect urllib3 werkzeug wheel wrapt yarl zipp
""".split()


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


environment = {
    **default_environment(),
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "extra": "",
}
with open("pyproject.toml", "rb") as file:
    wanted = [Requirement(line).name for line in tomllib.load(file)["project"]["dependencies"]]
device_has = {canonical(name) for name in DEVICE_HAS}
versions: dict[str, str] = {}
while wanted:
    name = canonical(wanted.pop())
    if name in versions or name in device_has:
        continue
    distribution = metadata.distribution(name)
    versions[name] = distribution.version
    for line in distribution.requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            wanted.append(requirement.name)
for name, version in sorted(versions.items()):
    print(f"{name}=={version}")
EOF
echo "carrying: $(tr '\n' ' ' <"$WHL/requirements.txt")"

# A binary wheel for the device's CPython 3.12 where PyPI has one; else (a pure-Python package published
# as source only, say antlr4-python3-runtime) a wheel built here.
PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$tag")
done
while read -r requirement; do
  if ! python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$WHL" "$requirement" 2>/dev/null; then
    python3 -m pip wheel -q --no-deps -w "$WHL" "$requirement"
  fi
done <"$WHL/requirements.txt"
uv build --wheel --out-dir "$WHL" --quiet

# MNIST for the device (it cannot download): the four files, gzipped, from this machine's data folder.
DATA=${MNIST_BUDGET_DATA:-./data}
mkdir -p "$WHL/data/MNIST/raw"
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ -f "$DATA/MNIST/raw/$name" ]; then
    gzip -c "$DATA/MNIST/raw/$name" >"$WHL/data/MNIST/raw/$name.gz"
  elif [ -f "$DATA/MNIST/raw/$name.gz" ]; then
    cp "$DATA/MNIST/raw/$name.gz" "$WHL/data/MNIST/raw/"
  else
    echo "error: $DATA/MNIST/raw/$name is missing: point MNIST_BUDGET_DATA at a folder that holds MNIST/raw/" >&2
    exit 2
  fi
done
ls "$WHL"
echo "$WHL: $(du -sh "$WHL" | cut -f1) (a device call carries at most 64 MiB with the working tree)"
