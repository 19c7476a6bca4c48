"""Checks that run before Hydra starts a job, so that a refused command writes nothing.

Hydra creates the run folder and writes ``.hydra/`` and the log file before the task's code runs;
a mistake found only then would already have overwritten an earlier run's files when
``hydra.run.dir`` points at one (as a resume does). ``preflight`` composes the same config with
Hydra's compose API and checks everything that is cheap to check: the override syntax and keys,
config values, the output folder, the model against its budget, the checkpoint to resume and the
data files. Each problem is one ``UserError`` naming the bad value and the fix.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import setup_globals
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnist_budget.checkpoints import checkpoint_to_resume, load_network
from mnist_budget.errors import UserError, find_user_error
from mnist_budget.hardware import run_settings
from mnist_budget.mnist_files import IDX_FILES, idx_file_problem
from mnist_budget.models import count_parameters
from mnist_budget.validate import check_config

# Hydra flags after which the command does not train (or is not ours to check).
OTHER_MODES = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--resolve", "--shell-completion", "-sc",
               "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}


def check_group_choices(overrides: list[str], conf_dir: Path) -> None:
    """Name an unknown config-group option in one line (Hydra's own report runs to a screenful)."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        group_dir = conf_dir / key
        if not sep or not group_dir.is_dir() or "(" in value or key.startswith("hydra/"):
            continue  # not a group choice, a sweep function, or a Hydra group that plugins add options to
        options = sorted(path.stem for path in group_dir.glob("*.yaml"))
        for choice in value.strip("[]").split(","):  # one option, a sweep a,b or a list [a,b]
            if choice not in ("", "null") and choice not in options:
                raise UserError(f"unknown {key} option '{choice}': choose one of {', '.join(options)} (conf/{key}/)")


def first_of_each_sweep(overrides: list[str]) -> list[str]:
    """The overrides of a sweep's first job (``seed=1,2,3`` -> ``seed=1``); a search space is left out."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    single = []
    for override, text in zip(parsed, overrides, strict=True):
        if not override.is_sweep_override():
            single.append(text)
            continue
        try:
            first = next(iter(override.sweep_string_iterator()))
        except Exception:  # noqa: BLE001 - interval(...) and other search spaces have no first value
            continue
        single.append(f"{override.get_key_element()}={first}")
    return single


def compose_config(overrides: list[str], conf_dir: Path) -> DictConfig:
    """The config the job will see, composed with Hydra's compose API; Hydra's errors become one line."""
    try:
        single = first_of_each_sweep(overrides)
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose(config_name="config", overrides=single, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise UserError(f"{hydra_message(err)}: {composition_fix(str(err))}") from err
    finally:
        GlobalHydra.instance().clear()


def hydra_message(err: BaseException) -> str:
    """Hydra's message in one line: its first line, without Hydra's own advice."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(err).__name__


def composition_fix(message: str) -> str:
    if "not in struct" in message or "Could not override" in message or "Key '" in message:
        return "check the key's spelling (python run.py --cfg job lists every key); prefix + to add a new key"
    if "Could not find" in message or "Could not load" in message:
        return "choose an existing option (python run.py --help lists the config groups and their options)"
    if "Could not append" in message or "already" in message:
        return "the key exists already: set it without the leading +"
    return "fix the override's syntax (key=value; a sweep needs -m)"


def check_output_folder(folder: Path, key: str) -> None:
    """Refuse a run folder that cannot be created or written."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}={folder} cannot be created: {existing} is a file; choose another folder with {key}=...")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}={folder} is not writable (no write permission on {existing}): choose another folder with {key}=...")


def check_model(cfg: DictConfig) -> None:
    """Build the network alone: a bad model argument or a model over its budget is refused now."""
    try:
        net = instantiate(cfg.model.net)
    except Exception as err:  # noqa: BLE001 - the model's own error, e.g. a bad channel count
        cause = err.__cause__ or err
        raise UserError(f"model {cfg.model.name} cannot be built from model.net ({hydra_message(cause)}): fix the model.* override") from err
    params = count_parameters(net)
    if params > cfg.model.budget:
        raise UserError(
            f"model {cfg.model.name} has {params:,} trainable parameters, over its budget of {cfg.model.budget:,}: "
            "shrink the model or raise model.budget"
        )


def check_augment(cfg: DictConfig) -> None:
    """Build the augmentation alone: its own checks refuse a bad range (say a negative rotation)."""
    try:
        instantiate(cfg.augment)
    except Exception as err:  # noqa: BLE001 - Hydra wraps the component's own error
        user_error = find_user_error(err)
        if user_error is not None:
            raise user_error from err
        raise UserError(f"augment cannot be built ({hydra_message(err.__cause__ or err)}): fix the augment.* override") from err


def check_resume(cfg: DictConfig, run_dir: Path) -> None:
    """A checkpoint to resume must exist, load safely and come from the same model and optimiser settings."""
    model, optim = (OmegaConf.to_container(cfg[group], resolve=True) for group in ("model", "optim"))
    checkpoint_to_resume(str(cfg.ckpt_path), run_dir, model, optim)


def check_data_files(cfg: DictConfig) -> None:
    """Damaged MNIST files are refused now; missing ones too unless the run may download them."""
    raw = Path(os.path.expanduser(str(cfg.data.data_dir))) / "MNIST" / "raw"
    problems = {name: idx_file_problem(raw / name) for name in IDX_FILES}
    if all(problem == "is missing" for problem in problems.values()):
        if cfg.data.get("download", False):
            return  # the run downloads them, and says what to do if it cannot
        raise UserError(
            f"MNIST is missing from {raw} and data.download=false: copy the four original idx files "
            f"({', '.join(IDX_FILES)}) there, point MNIST_BUDGET_DATA (or paths.data_dir=...) at a folder "
            "that holds MNIST/raw/, or allow data.download=true"
        )
    bad = [f"{raw / name} {problem}" for name, problem in problems.items() if problem]
    if bad:
        raise UserError(
            f"{'; '.join(bad)}: copy the four original idx files into {raw} (or run with data.download=true "
            "after deleting damaged ones), or point MNIST_BUDGET_DATA (or paths.data_dir=...) at a folder that holds MNIST/raw/"
        )


def check_study_name(cfg: DictConfig) -> None:
    """An Optuna study kept in a file needs a name: hparams_search=record takes the experiment's."""
    sweeper = OmegaConf.select(cfg, "hydra.sweeper") or {}
    if "study_name" in sweeper and sweeper.get("storage") and not sweeper.get("study_name"):
        raise UserError(
            "hydra.sweeper.study_name is empty (hparams_search=record names the study after the experiment): "
            "add experiment=record_20k, record_8k or record_4k, or hydra.sweeper.study_name=<name>"
        )


def check_trackers(cfg: DictConfig) -> None:
    """logger=mlflow or wandb needs its optional package."""
    packages = {"MLFlowLogger": "mlflow", "WandbLogger": "wandb", "wandb_logger": "wandb"}
    for name, entry in (cfg.get("logger") or {}).items():
        target = str((entry or {}).get("_target_", ""))
        package = next((pkg for key, pkg in packages.items() if target.endswith(key)), None)
        if package and importlib.util.find_spec(package) is None:
            raise UserError(f"logger={name} needs the {package} package: uv sync --extra {package} (or pip install {package})")


def make_sqlite_folders(cfg: DictConfig) -> None:
    """Create the folders of SQLite stores (an Optuna study, an MLflow tracking database): SQLite
    creates the file, not its folder. The one thing preflight writes, once every check has passed."""
    stores = [OmegaConf.select(cfg, "hydra.sweeper.storage", default=None)]
    stores += [entry.get("tracking_uri") for entry in (cfg.get("logger") or {}).values() if entry]
    for store in stores:
        if isinstance(store, str) and store.startswith("sqlite:///"):
            Path(store.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def required(cfg: DictConfig, key: str, what: str) -> str:
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise UserError(f"task={cfg.task_name} needs {key}=<{what}>: add it to the command line")
    return str(cfg[key])


def check_task_inputs(cfg: DictConfig) -> None:
    """eval, predict and export: a checkpoint whose network loads; predict: inputs that exist."""
    load_network(required(cfg, "ckpt_path", "a .ckpt from a run's checkpoints/"))
    if cfg.task_name == "predict":
        from mnist_budget.tasks.predict import find_inputs

        find_inputs(required(cfg, "input", "an image, a folder of images or a quoted glob"))
    if cfg.task_name == "export" and str(cfg.format) not in ("onnx", "pt2"):
        raise UserError(f"format={cfg.format} is not supported: use onnx or pt2")


def preflight(argv: list[str], conf_dir: Path) -> None:
    """Check a ``run.py`` command line before Hydra runs it; raise a UserError for the first problem."""
    if any(arg in OTHER_MODES or arg.startswith(("--config", "-c=")) for arg in argv):
        return
    multirun = any(arg in ("-m", "--multirun") for arg in argv)
    overrides = [arg for arg in argv if not arg.startswith("-")]
    check_group_choices(overrides, conf_dir)
    cfg = compose_config(overrides, conf_dir)
    setup_globals()  # Hydra's ${now:...} and ${hydra:...} resolvers, for the run folder's name
    HydraConfig.instance().set_config(cfg)
    run_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        run_dir = Path(str(OmegaConf.select(cfg, run_key)))
    except OmegaConfBaseException as err:
        raise UserError(f"{run_key} cannot be resolved ({hydra_message(err)}): fix the {run_key} override") from err
    check_output_folder(run_dir, run_key)
    check_config(cfg)
    run_settings(cfg)  # the device (trainer=gpu without a GPU) and the memory layout
    if cfg.task_name == "train":
        check_model(cfg)
        if cfg.get("augment"):
            check_augment(cfg)
        if cfg.get("ckpt_path") and not multirun:
            check_resume(cfg, run_dir)
    else:
        check_task_inputs(cfg)
    if cfg.task_name != "predict":
        check_data_files(cfg)
    check_trackers(cfg)
    check_study_name(cfg)
    make_sqlite_folders(cfg)
