"""Checks that run before Hydra starts a job, so that a refused command writes nothing.

Hydra creates the run folder and writes ``.hydra/`` and the log file before the task's code runs;
a mistake found only then would already have overwritten an earlier run's files when
``hydra.run.dir`` points at one (as a resume does). ``preflight`` composes the same config with
Hydra's compose API and checks, in this order:
1. without torch or Lightning: the override syntax and keys, the config values
   (mnist_budget.rules), the output folder, trackers and study name, and each task's own inputs
   (``TASK_CHECKS``: the data files, the images to read, the settings of export and serve);
2. then, with torch (never Lightning), what needs a network or a checkpoint: the model against
   its budget, the augmentation, the device, the checkpoint to resume or to use
   (mnist_budget.tasks.checks).
Every problem is one ``UserError`` naming the bad value and the fix.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import setup_globals
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnist_budget.data.sets import check_mnist_files, dataset_name, raw_folder
from mnist_budget.errors import UserError, first_line
from mnist_budget.inference.inputs import find_inputs
from mnist_budget.inference.web import check_runtime
from mnist_budget.reporting.model_card import card_problem
from mnist_budget.rules import (
    check_config,
    check_export_format,
    check_serve_settings,
    check_writable,
    positive_int,
    positive_number,
    required,
    runs_on_slurm,
    runs_search,
)

# Hydra flags after which the command does not train (or is not ours to check).
OTHER_MODES = {
    "--cfg",
    "-c",
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--resolve",
    "--shell-completion",
    "-sc",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}


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
        raise UserError(f"{first_line(err).rstrip('.')}: {composition_fix(str(err), overrides)}") from err
    finally:
        GlobalHydra.instance().clear()


def parses(override: str) -> bool:
    try:
        OverridesParser.create().parse_override(override)
    except HydraException:
        return False
    return True


def composition_fix(message: str, overrides: list[str]) -> str:
    if "not in struct" in message or "Could not override" in message or "Key '" in message:
        return "check the key's spelling (python run.py --cfg job lists every key); prefix + to add a new key"
    if "Could not find" in message or "Could not load" in message:
        return "choose an existing option (python run.py --help lists the config groups and their options)"
    if "Could not append" in message or "already" in message:
        return "the key exists already: set it without the leading +"
    for override in overrides:
        key, _, value = override.partition("=")
        if any(char in value for char in " (),") and not parses(override):
            # Hydra's override grammar gives these characters a meaning (sweeps, functions): quote the value
            return f"quote a value with spaces, brackets or commas for Hydra, inside the shell's quotes: '{key}=\"{value}\"'"
    return "fix the override's syntax (key=value; a sweep needs -m)"


def check_study_name(cfg: DictConfig) -> None:
    """An Optuna study kept in a file needs a name: hparams_search=record takes the experiment's."""
    sweeper = OmegaConf.select(cfg, "hydra.sweeper") or {}
    if "study_name" in sweeper and not sweeper.get("study_name"):
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
            raise UserError(
                f"logger={name} needs the {package} package: uv sync --extra {package} (or pip install {package})"
            )


def make_sqlite_folders(cfg: DictConfig) -> None:
    """Create the folders of SQLite stores (an Optuna study, an MLflow tracking database): SQLite
    creates the file, not its folder. The one thing preflight writes, once every check has passed."""
    stores = [OmegaConf.select(cfg, "hydra.sweeper.storage", default=None)]
    stores += [entry.get("tracking_uri") for entry in (cfg.get("logger") or {}).values() if entry]
    for store in stores:
        if isinstance(store, str) and store.startswith("sqlite:///"):
            Path(store.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def check_data_files(cfg: DictConfig) -> None:
    """Damaged data files are refused now; missing ones too unless the run may download them and
    the download host answers (an unknown ``data.dataset`` too)."""
    name = dataset_name(cfg)
    check_mnist_files(
        raw_folder(str(cfg.data.data_dir), name), download=bool(cfg.data.get("download", False)), name=name
    )


def check_search(cfg: DictConfig, overrides: list[str]) -> None:
    """A search (hydra/sweeper=optuna_search): its space, counts and storage, before any trial."""
    if not runs_search(cfg):
        return
    sweeps = [
        o
        for o, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides), strict=True)
        if parsed.is_sweep_override()
    ]
    if sweeps and sweeps[0].lstrip("+").startswith("hydra.sweeper.params."):
        key, _, value = sweeps[0].partition("=")
        raise UserError(
            f"{sweeps[0]} would make Hydra sweep over the search space itself: quote the range so that it stays text, "
            f"inside the shell's quotes: '{key}=\"{value}\"'"
        )
    if sweeps:
        raise UserError(
            f"{sweeps[0]} sweeps inside a search: a search runs the trials of its space (hydra.sweeper.params in "
            "conf/hparams_search/); give one value, or add the key to the space"
        )
    # Imported only for a search: Optuna is not needed by any other command.
    from mnist_budget.search.identity import fixed_settings
    from mnist_budget.search.space import check_space, parse_space
    from mnist_budget.search.study import check_settings, settings_of

    settings = settings_of(cfg.hydra.sweeper, str(cfg.hydra.sweep.dir))
    space = parse_space(settings.params)
    check_space(space, cfg)
    check_settings(settings, space, fixed_settings(cfg, list(space)))


def check_can_listen(host: str, port: int) -> None:
    """Bind the address once and let it go: a port in use or an unknown host is refused now, in one
    line, rather than by uvicorn after the network has been loaded (and exported)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
            probe.bind(address)
    except OSError as err:
        raise UserError(
            f"cannot listen on host={host} port={port} ({err.strerror or err}): pick another port= (or host=)"
        ) from err


def check_train(cfg: DictConfig, run_dir: Path) -> None:
    check_data_files(cfg)


def check_eval(cfg: DictConfig, run_dir: Path) -> None:
    required(cfg, "ckpt_path", "a .ckpt from a run's checkpoints/")
    check_data_files(cfg)


def check_predict(cfg: DictConfig, run_dir: Path) -> None:
    required(cfg, "ckpt_path", "a .ckpt from a run's checkpoints/")
    find_inputs(required(cfg, "input", "an image, a folder of images or a quoted glob"))
    positive_int(cfg, "predict_batch_size", "images per forward pass")
    check_writable("output", run_dir / str(cfg.output))


def check_export(cfg: DictConfig, run_dir: Path) -> None:
    required(cfg, "ckpt_path", "a .ckpt from a run's checkpoints/")
    check_export_format(str(cfg.format))
    web = str(cfg.format) == "web"
    if cfg.get("output"):
        output = Path(str(cfg.output))
        check_writable("output", output, folder=web)
        problem = card_problem(output if web else output.parent)
        if problem:
            raise UserError(f"output={output}: {problem}, which the model card would replace: choose another output")
    if web:
        check_runtime(str(cfg.data.data_dir), str(cfg.web.ort_version), str(cfg.web.registry))
    if cfg.get("verify", True):
        positive_number(cfg, "tolerance", "the largest logit difference accepted")
        check_data_files(cfg)


def check_serve(cfg: DictConfig, run_dir: Path) -> None:
    required(cfg, "ckpt_path", "a .ckpt from a run's checkpoints/")
    check_serve_settings(cfg)
    check_can_listen(str(cfg.host), cfg.port)


def added_trainer_keys(overrides: list[str], conf_dir: Path) -> list[str]:
    """The trainer keys that the command line adds (``++trainer.foo=1``) and no shipped config has:
    only Lightning's Trainer can tell whether each is one of its arguments."""
    adding = [o for o in overrides if o.startswith("+") and o.lstrip("+").startswith("trainer.")]
    if not adding:
        return []
    shipped = compose_config([o for o in overrides if o not in adding], conf_dir).trainer
    names = {o.lstrip("+").partition("=")[0].removeprefix("trainer.").split(".")[0] for o in adding}
    return sorted(name for name in names if name not in shipped)


# Each task's own inputs, checked without torch (keyed by conf/task/<name>.yaml's task_name).
TASK_CHECKS: dict[str, Callable[[DictConfig, Path], None]] = {
    "train": check_train,
    "eval": check_eval,
    "predict": check_predict,
    "export": check_export,
    "serve": check_serve,
}


def preflight(argv: list[str], conf_dir: Path) -> None:
    """Check a ``run.py`` command line before Hydra runs it; raise a UserError for the first problem."""
    if any(arg in OTHER_MODES or arg.startswith(("--config", "-c=")) for arg in argv):
        return
    overrides = [arg for arg in argv if not arg.startswith("-")]
    check_group_choices(overrides, conf_dir)
    cfg = compose_config(overrides, conf_dir)
    multirun = (
        any(arg in ("-m", "--multirun") for arg in argv) or str(OmegaConf.select(cfg, "hydra.mode")) == "MULTIRUN"
    )
    setup_globals()  # Hydra's ${now:...} and ${hydra:...} resolvers, for the run folder's name
    HydraConfig.instance().set_config(cfg)
    run_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        run_dir = Path(str(OmegaConf.select(cfg, run_key)))
    except OmegaConfBaseException as err:
        raise UserError(
            f"{run_key} cannot be resolved ({first_line(err).rstrip('.')}): fix the {run_key} override"
        ) from err
    check_writable(run_key, run_dir, folder=True)
    check_search(cfg, overrides)
    check_run(cfg, run_dir, multirun, added_trainer_keys(overrides, conf_dir))
    make_sqlite_folders(cfg)


def check_slurm_gpus(cfg: DictConfig) -> None:
    """A GPU trainer on the SLURM launcher needs jobs that ask SLURM for GPUs."""
    launcher = OmegaConf.select(cfg, "hydra.launcher") or {}
    if (
        runs_on_slurm(launcher)
        and str(cfg.trainer.get("accelerator")) in ("gpu", "cuda")
        and not launcher.get("gpus_per_node")
    ):
        raise UserError(
            f"trainer.accelerator={cfg.trainer.accelerator} on SLURM jobs that ask for no GPU "
            "(hydra.launcher.gpus_per_node=0): use hydra/launcher=slurm_gpu, or set hydra.launcher.gpus_per_node"
        )


def check_run(cfg: DictConfig, run_dir: Path, multirun: bool = False, added_trainer_keys: list[str] = ()) -> None:
    """Every check of a composed config: first those that need no torch, then the rest."""
    check_config(cfg)
    check_slurm_gpus(cfg)
    check_trackers(cfg)
    check_study_name(cfg)
    TASK_CHECKS.get(str(cfg.task_name), lambda *_: None)(cfg, run_dir)
    # Imported only now: torch takes a second or more to load, and every refusal above is answered without it.
    from mnist_budget.tasks.checks import check_with_torch

    check_with_torch(cfg, run_dir, multirun, list(added_trainer_keys))
