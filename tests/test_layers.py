"""The package's layers (README.md, "Layout"): each module imports only its own layer and those
below it, and the command line's first checks need neither torch nor Lightning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "mnist_budget"
# Lowest first: a module may import from its own layer and from every layer before it.
LAYERS = [
    {"errors", "files", "console", "rules", "stopping"},
    {"data"},
    {"models"},
    {"hardware", "checkpoints"},
    {"inference"},
    {"training"},
    {"reporting"},
    {"search"},
    {"tasks"},
]
# Light on purpose (no torch, no Lightning): what the command line imports before its first refusal.
WITHOUT_TORCH = {
    "errors",
    "stopping",
    "files",
    "console",
    "rules",
    "data.sets",
    "inference.inputs",
    "inference.web",
    "reporting.model_card",
    "tasks",
    "tasks.preflight",
    "tasks.runner",
}


def layer_of(module: str) -> int:
    """The layer of a module named relative to the package (``data.sets`` -> the data layer)."""
    top = module.split(".")[0]
    return next(rank for rank, names in enumerate(LAYERS) if top in names)


def imported_modules(path: Path) -> set[str]:
    """The package's modules that a file imports, anywhere in it, relative to the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_budget."):
            found.add(node.module.removeprefix("mnist_budget."))
        elif isinstance(node, ast.Import):
            found |= {
                alias.name.removeprefix("mnist_budget.")
                for alias in node.names
                if alias.name.startswith("mnist_budget.")
            }
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = sorted(path for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE or path.name != "__init__.py")


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_no_module_imports_a_layer_above_its_own(path):
    own = layer_of(module_name(path))
    upward = sorted(name for name in imported_modules(path) if layer_of(name) > own)
    assert not upward, f"{module_name(path)} (layer {own}) imports {upward} from a layer above"


def test_the_top_of_the_package_has_at_most_ten_modules():
    assert len(list(PACKAGE.glob("*.py"))) <= 10


def imports_after(code: str) -> set[str]:
    """Which of torch and lightning a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted(name for name in ('torch', 'lightning') if name in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(ast.literal_eval(done.stdout.strip().splitlines()[-1]))


def test_the_light_modules_import_neither_torch_nor_lightning():
    code = "\n".join(f"import mnist_budget.{name}" for name in sorted(WITHOUT_TORCH))
    assert imports_after(code) == set()


def test_a_refusal_in_the_first_checks_loads_neither_torch_nor_lightning(tmp_path):
    code = f"""
from pathlib import Path
from mnist_budget.errors import UserError
from mnist_budget.tasks.preflight import preflight
for argv in (["model=nope"], ["optim.lr=-1"], ["paths.data_dir={tmp_path / "none"}", "data.download=false"]):
    try:
        preflight([*argv, "hydra.run.dir={tmp_path / "run"}"], Path("conf"))
    except UserError:
        pass
    else:
        raise SystemExit(f"{{argv}} was not refused")
"""
    assert imports_after(code) == set()
    assert not (tmp_path / "run").exists()
