"""A search's study: where it lives, and how its trials are handed out, kept alive and retried.

The study lives in a storage that outlives the process: a journal file (Optuna's
``JournalStorage``; the default, in the search folder, and safe on a shared folder for workers on
several machines) or a database URL (``RDBStorage``: SQLite, PostgreSQL, ...). Every worker, in
however many processes or machines, opens the same study and asks for the next trial when it is
free (``next_trial``), under a lock on the search folder so that the study never runs more trials
than asked for.

A running trial touches ``.heartbeat`` in its folder every ``heartbeat_s`` seconds. A trial left
RUNNING by a process that died (killed, out of memory, a lost node) has a stale heartbeat: the
next worker to ask marks it failed and enqueues it again (``retry_stale_and_interrupted``), as it
does for a trial stopped by SIGTERM or Ctrl-C; the retry resumes from the stopped trial's
``checkpoints/last.ckpt`` when there is one (mnist_budget.tasks.search).
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from mnist_budget.errors import UserError, first_line
from mnist_budget.reporting.sweep import record_failure
from mnist_budget.rules import check_writable, is_positive_int
from mnist_budget.search.budget import is_over_budget
from mnist_budget.search.identity import Recipe, changed_settings
from mnist_budget.search.space import describe

SPACE_ATTR = "search_space"  # the study's user attribute that records its search space
FIXED_ATTR = "fixed_settings"  # the study's user attribute: every setting it does not search (identity.py)
RECIPE_ATTR = "recipe"  # the study's user attribute: how to train one of its trials alone (identity.Recipe)
INTERRUPTED = "interrupted"  # a failed trial's user attribute: why it stopped (it is retried)
RETRY_OF = "retry_of"  # a trial's user attribute: the number of the stopped trial it repeats
PRUNED_AT = "pruned_at_epoch"  # a pruned trial's user attribute: the last epoch it trained

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search logs its own lines


@dataclass(frozen=True)
class SearchSettings:
    """``hydra.sweeper`` of conf/hydra/sweeper/optuna_search.yaml, resolved."""

    study_name: str
    storage: str  # a journal file's path, or a database URL (anything with "://")
    direction: str  # maximize or minimize
    n_trials: int  # trials in the whole study, over every run of the command and every worker
    n_jobs: int  # workers this command starts through its launcher
    sampler: Any  # a sampler config (_target_: optuna.samplers.*)
    pruner: Any  # a pruner config, or None
    prune_on: str  # the metric reported to the pruner after each validation
    params: Mapping[str, Any]  # the search space, in Hydra's sweep syntax
    max_over_budget: int  # shapes over model.budget (never trained) after which the search stops
    enqueue_base: bool  # a new study's first trial is the base config's own values of the searched keys
    heartbeat_s: float
    stale_after_s: float
    sweep_dir: Path


def settings_of(sweeper: DictConfig, sweep_dir: str | Path) -> SearchSettings:
    values = OmegaConf.to_container(sweeper, resolve=True)
    return SearchSettings(
        study_name=str(values["study_name"]),
        storage=str(values.get("storage") or Path(sweep_dir) / "study.journal"),
        direction=str(values["direction"]),
        n_trials=values["n_trials"],
        n_jobs=values["n_jobs"],
        sampler=values.get("sampler"),
        pruner=values.get("pruner"),
        prune_on=str(values.get("prune_on", "val/acc")),
        params=values.get("params") or {},
        max_over_budget=values.get("max_over_budget", 500),
        enqueue_base=bool(values.get("enqueue_base", False)),
        heartbeat_s=float(values.get("heartbeat_s", 10)),
        stale_after_s=float(values.get("stale_after_s", 60)),
        sweep_dir=Path(sweep_dir),
    )


def is_url(storage: str) -> bool:
    return "://" in storage


def make_storage(settings: SearchSettings) -> BaseStorage:
    """The study's storage: a journal file, or a database (one line if it cannot be reached)."""
    if not is_url(settings.storage):
        path = Path(settings.storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        return RDBStorage(settings.storage, engine_kwargs=engine_options(settings.storage))
    except Exception as err:  # noqa: BLE001 - a driver, a network or a permission error: all say "cannot reach"
        raise unreachable(settings.storage, err) from err


def engine_options(url: str) -> dict[str, Any]:
    """SQLAlchemy's options: a dead connection is replaced, not reused; a server that does not answer
    is given up on after seconds, not minutes."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        options["connect_args"] = {"connect_timeout": 5}
    return options


def unreachable(url: str, err: BaseException) -> UserError:
    return UserError(
        f"hydra.sweeper.storage={url} cannot be reached ({type(err).__name__}: {first_line(err)}): start the database, "
        "fix the URL (PostgreSQL: postgresql+psycopg://user:password@host/db, needs `uv sync --extra postgres`), "
        "or leave storage=null for a journal file in the search folder"
    )


def check_settings(
    settings: SearchSettings, space: Mapping[str, BaseDistribution], fixed: Mapping[str, str] | None = None
) -> None:
    """Before any trial starts: counts, direction, the storage, and an existing study of that name
    with another direction, search space or fixed settings (``fixed``: identity.fixed_settings).
    Writes nothing."""
    if not is_positive_int(settings.n_trials):
        raise UserError(f"hydra.sweeper.n_trials={settings.n_trials!r} is invalid: it must be a positive integer")
    if not is_positive_int(settings.max_over_budget):
        raise UserError(
            f"hydra.sweeper.max_over_budget={settings.max_over_budget!r} is invalid: it must be a positive integer"
        )
    if not is_positive_int(settings.n_jobs):
        raise UserError(f"hydra.sweeper.n_jobs={settings.n_jobs!r} is invalid: it must be a positive integer (workers)")
    if settings.direction not in ("maximize", "minimize"):
        raise UserError(f"hydra.sweeper.direction={settings.direction} is invalid: use maximize or minimize")
    existing = existing_study(settings)
    if existing is None:
        return
    if existing.direction.name.lower() != settings.direction:
        raise UserError(
            f"study {settings.study_name!r} in {settings.storage} was created to {existing.direction.name.lower()}, not to "
            f"{settings.direction}: name another study (hydra.sweeper.study_name=...) or another storage"
        )
    saved = existing.user_attrs.get(SPACE_ATTR)
    if saved is not None and saved != describe(space):
        changed = sorted(set(saved.items()) ^ set(describe(space).items()))
        raise UserError(
            f"study {settings.study_name!r} in {settings.storage} searched another space (first difference: "
            f"{changed[0][0]}): name another study (hydra.sweeper.study_name=...) to search this one"
        )
    changed = changed_settings(existing.user_attrs.get(FIXED_ATTR) or {}, fixed or {})
    if existing.user_attrs.get(FIXED_ATTR) is not None and fixed is not None and changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise UserError(
            f"study {settings.study_name!r} in {settings.storage} was searched with {changed[0]}{more}: run it with the "
            "settings it was searched with, or name a new study (hydra.sweeper.study_name=...)"
        )


def existing_study(settings: SearchSettings) -> optuna.Study | None:
    """The study of that name if its storage holds one; the storage only read."""
    if not is_url(settings.storage):
        path = Path(settings.storage)
        check_writable("hydra.sweeper.storage", path)
        if not path.is_file():
            return None
        storage: BaseStorage = JournalStorage(JournalFileBackend(str(path)))
    elif settings.storage.startswith("sqlite:///") and not Path(settings.storage.removeprefix("sqlite:///")).is_file():
        check_writable("hydra.sweeper.storage", Path(settings.storage.removeprefix("sqlite:///")))
        return None  # SQLite makes the file when the search starts (the preflight makes its folder)
    else:
        storage = existing_database(settings.storage)
        if storage is None:
            return None
    try:
        return optuna.load_study(study_name=settings.study_name, storage=storage)
    except KeyError:
        return None


def existing_database(url: str) -> BaseStorage | None:
    """The database's Optuna storage if it has Optuna's tables; ``None`` if it has none yet."""
    import sqlalchemy  # a dependency of Optuna's RDBStorage: asked only for a database URL

    try:
        engine = sqlalchemy.create_engine(url, **engine_options(url))
        with engine.connect():
            has_tables = sqlalchemy.inspect(engine).has_table("studies")
    except Exception as err:  # noqa: BLE001 - a driver, a network or a permission error: all say "cannot reach"
        raise unreachable(url, err) from err
    return RDBStorage(url, engine_kwargs=engine_options(url), skip_table_creation=True) if has_tables else None


def open_study(
    settings: SearchSettings,
    space: Mapping[str, BaseDistribution],
    worker: int = 0,
    storage: BaseStorage | None = None,
    identity: tuple[Mapping[str, str], Recipe | None] | None = None,
) -> optuna.Study:
    """The study, created on first use. Each worker samples with its own seed: the sampler's seed,
    plus 1,000 times the worker's number, plus the trials the study already has; so two workers,
    or a run that continues a study, do not propose the trials already proposed, and a new study
    searched by one worker proposes the same trials each time. ``identity``: the fixed settings
    and the recipe (identity.py) that the search command records with a study that has none yet."""
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=storage or make_storage(settings),
        pruner=instantiate(settings.pruner) if settings.pruner else optuna.pruners.NopPruner(),
        direction=settings.direction,
        load_if_exists=True,
    )
    sampler_config = dict(settings.sampler or {"_target_": "optuna.samplers.TPESampler"})
    if sampler_config.get("seed") is not None:
        sampler_config["seed"] = int(sampler_config["seed"]) + 1000 * worker + len(study.get_trials(deepcopy=False))
    study.sampler = instantiate(sampler_config)
    if SPACE_ATTR not in study.user_attrs:
        study.set_user_attr(SPACE_ATTR, describe(space))
    if identity is not None and FIXED_ATTR not in study.user_attrs:
        study.set_user_attr(FIXED_ATTR, dict(identity[0]))
        if identity[1] is not None:
            study.set_user_attr(RECIPE_ATTR, identity[1].as_dict())
    return study


def recipe(study: optuna.Study) -> Recipe | None:
    """How to train one of the study's trials alone (``None`` for a study made before it was kept)."""
    saved = study.user_attrs.get(RECIPE_ATTR)
    return Recipe(**saved) if saved else None


def trial_folder(sweep_dir: Path, number: int) -> Path:
    return sweep_dir / f"trial_{number}"


@contextmanager
def search_lock(sweep_dir: Path) -> Iterator[None]:
    """One worker at a time hands out trials (a lock file in the search folder, shared by every
    process that searches this study there)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with (sweep_dir / ".search.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def heartbeat(folder: Path, every_s: float) -> Iterator[None]:
    """Touch ``folder/.heartbeat`` every ``every_s`` seconds while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    beat, done = folder / ".heartbeat", threading.Event()
    beat.touch()

    def keep_beating() -> None:
        while not done.wait(every_s):
            beat.touch()

    thread = threading.Thread(target=keep_beating, name="search-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def is_stale(trial: FrozenTrial, sweep_dir: Path, stale_after_s: float) -> bool:
    """A RUNNING trial whose process stopped beating (or never started to)."""
    beat = trial_folder(sweep_dir, trial.number) / ".heartbeat"
    last = beat.stat().st_mtime if beat.is_file() else trial.datetime_start.timestamp()
    return time.time() - last > stale_after_s


def retry_stale_and_interrupted(study: optuna.Study, storage: BaseStorage, settings: SearchSettings) -> list[int]:
    """Mark stale RUNNING trials failed (interrupted), and enqueue every interrupted trial that has
    no retry yet, with its parameters; return the numbers enqueued."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_stale(trial, settings.sweep_dir, settings.stale_after_s):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            why = f"no heartbeat for over {settings.stale_after_s:g} s (its process died)"
            storage.set_trial_user_attr(trial_id, INTERRUPTED, why)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
            # Its process wrote no record: the summary's row for it comes from this one.
            overrides = (recipe(study) or Recipe([], [], [])).overrides(trial.params)
            folder = trial_folder(settings.sweep_dir, trial.number)
            folder.mkdir(parents=True, exist_ok=True)
            record_failure(folder, f"{why}; the next trial retries it", status="interrupted", overrides=overrides)
    trials = study.get_trials(deepcopy=False)
    retried = {trial.user_attrs.get(RETRY_OF) for trial in trials}
    enqueued = []
    for trial in trials:
        if trial.state == TrialState.FAIL and INTERRUPTED in trial.user_attrs and trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
            enqueued.append(trial.number)
    return enqueued


def counts_toward_total(trial: FrozenTrial) -> bool:
    """Every trial but an interrupted one (its retry counts instead) and a network over the budget
    (never trained: ``n_trials`` counts trained trials)."""
    return not (trial.state == TrialState.FAIL and INTERRUPTED in trial.user_attrs) and not is_over_budget(trial)


def next_trial(
    study: optuna.Study, storage: BaseStorage, settings: SearchSettings, space: Mapping[str, BaseDistribution]
) -> Trial | None:
    """The next trial for a free worker, or ``None`` when the study has all it asked for."""
    with search_lock(settings.sweep_dir):
        retry_stale_and_interrupted(study, storage, settings)
        trials = study.get_trials(deepcopy=False)
        waiting = any(trial.state == TrialState.WAITING for trial in trials)
        if not waiting and sum(map(counts_toward_total, trials)) >= settings.n_trials:
            return None
        if sum(map(is_over_budget, trials)) >= settings.max_over_budget:
            log.warning(
                "search stops: %d shapes over model.budget (hydra.sweeper.max_over_budget): lower the ranges of "
                "hydra.sweeper.params, or raise model.budget",
                settings.max_over_budget,
            )
            return None
        return study.ask(dict(space))
