"""The Optuna search (src/mnist_budget/search/, tasks/search.py): refusals before any trial, the
study's accounting (stale trials retried, the total kept), a tiny pruned search through run.py;
in the slow suite, a search killed mid-trial and resumed, a two-worker search stopped by SIGTERM,
and two workers sharing a study in a real PostgreSQL server."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from conftest import CONF_DIR, ROOT, compose_cfg, preflight_refusal, run_cli, unavailable
from mnist_budget.search.space import describe, parse_space
from mnist_budget.search.study import (
    INTERRUPTED,
    RETRY_OF,
    make_storage,
    next_trial,
    open_study,
    settings_of,
    trial_folder,
)
from mnist_budget.tasks.preflight import preflight

SPACE = {"optim.lr": "interval(0.05, 0.4)"}
TINY = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)


def settings(tmp_path: Path, **changes):
    sweeper = {
        "study_name": "s",
        "storage": None,
        "direction": "maximize",
        "n_trials": 3,
        "n_jobs": 1,
        "sampler": {"_target_": "optuna.samplers.RandomSampler", "seed": 1},
        "pruner": None,
        "params": SPACE,
        "heartbeat_s": 1,
        "stale_after_s": 2,
        **changes,
    }
    return settings_of(OmegaConf.create(sweeper), tmp_path)


def journal_study(path: Path, direction: str, space: dict[str, str]) -> None:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="mnist_budget", storage=storage, direction=direction)
    study.set_user_attr("search_space", describe(parse_space(space)))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (['+hydra.sweeper.params.optim.lrr="interval(0.1,0.2)"'], "hydra.sweeper.params.optim.lrr is not a key"),
        (['+hydra.sweeper.params.optim.momentum="interval(0.9,0.8)"'], "an empty interval [0.9, 0.8]"),
        (['+hydra.sweeper.params.optim="interval(0.1,0.2)"'], "optim is a group of settings"),
        (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is invalid"),
        (
            ["hydra.sweeper.storage=postgresql+psycopg://nobody@127.0.0.1:9/none"],
            "postgresql+psycopg://nobody@127.0.0.1:9/none cannot be reached",
        ),
        (["seed=1,2"], "seed=1,2 sweeps inside a search"),
        (["+hydra.sweeper.params.optim.wd=interval(0.1,0.2)"], "quote the range"),
    ],
)
def test_a_bad_search_is_refused_before_any_trial(tmp_path, mnist_root, overrides, fragment):
    sweep = tmp_path / "search"
    line = preflight_refusal(
        "-m",
        "hparams_search=optuna",
        f"hydra.sweep.dir={sweep}",
        *overrides,
        run_dir=tmp_path / "x",
        data_dir=mnist_root,
    )
    assert fragment in line
    assert not sweep.exists()


@pytest.mark.parametrize(
    ("direction", "space", "fragment"),
    [
        ("maximize", None, None),  # the study the command made: continued
        ("minimize", None, "was created to minimize, not to maximize"),
        ("maximize", {"optim.lr": "interval(0.1, 0.2)"}, "searched another space"),
    ],
)
def test_a_study_of_that_name_is_continued_only_with_the_same_direction_and_space(
    tmp_path, mnist_root, direction, space, fragment
):
    journal = tmp_path / "study.journal"
    # The space the command searches: conf/hparams_search/optuna.yaml's, as Hydra composes it.
    shipped = OmegaConf.to_container(compose_cfg(tmp_path, mnist_root, "hparams_search=optuna").hydra.sweeper.params)
    assert shipped and "optim.lr" in shipped
    journal_study(journal, direction, space or shipped)
    command = ("-m", "hparams_search=optuna", f"hydra.sweeper.storage={journal}", f"hydra.sweep.dir={tmp_path}")
    if fragment is None:  # accepted: the preflight raises nothing
        preflight([*command, f"hydra.run.dir={tmp_path / 'x'}", f"paths.data_dir={mnist_root}"], CONF_DIR)
        return
    line = preflight_refusal(*command, run_dir=tmp_path / "x", data_dir=mnist_root)
    assert fragment in line and "hydra.sweeper.study_name" in line


def test_the_study_hands_out_the_asked_number_of_trials_and_retries_a_stale_one(tmp_path):
    search = settings(tmp_path)
    space, storage = parse_space(search.params), make_storage(search)
    study = open_study(search, space, storage=storage)
    first = next_trial(study, storage, search, space)
    trial_folder(tmp_path, first.number).mkdir()
    (trial_folder(tmp_path, first.number) / ".heartbeat").touch()
    os.utime(trial_folder(tmp_path, first.number) / ".heartbeat", (time.time() - 10,) * 2)  # its process died
    second = next_trial(study, storage, search, space)  # the stale first trial is failed and enqueued again
    frozen = {t.number: t for t in study.get_trials()}
    assert frozen[first.number].state == optuna.trial.TrialState.FAIL and INTERRUPTED in frozen[first.number].user_attrs
    assert second.params == first.params and frozen[second.number].user_attrs[RETRY_OF] == first.number
    study.tell(second, 0.9)
    others = [next_trial(study, storage, search, space) for _ in range(3)]
    assert others[2] is None and all(t is not None for t in others[:2])  # 3 trials in all: the retry counts once
    for trial in others[:2]:
        study.tell(trial, 0.5)
    assert next_trial(study, storage, search, space) is None


@pytest.mark.slow  # the quick suite runs a search through run.py in tests/test_architecture_search.py
def test_a_tiny_search_prunes_its_trials_and_records_the_epoch(tmp_path, mnist_root):
    sweep = tmp_path / "search"
    result = run_cli(
        "-m",
        "hparams_search=optuna",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=2",
        "~hydra.sweeper.pruner",
        "+hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 2.0}",
        *TINY,
        data_dir=mnist_root,
        run_dir=tmp_path / "unused",
    )  # a threshold no accuracy reaches: every trial is pruned after its first validation
    assert result.returncode == 0, result.stderr[-3000:]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "study.journal")))
    trials = optuna.load_study(study_name="mnist_budget", storage=storage).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(t.user_attrs["pruned_at_epoch"] == 1 for t in trials)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [row["status"] for row in rows] == ["pruned: after epoch 1 by the pruner"] * 2
    assert "2 of 2 trials (2 pruned)" in result.stderr + result.stdout


# --- slow: real searches stopped and resumed --------------------------------------------------------------------


def start_search(sweep: Path, data_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "MNIST_BUDGET_DATA": str(data_dir)}
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        "-m",
        "hparams_search=optuna",
        f"hydra.sweep.dir={sweep}",
        *overrides,
    ]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def study_of(sweep: Path, storage: str | None = None) -> optuna.Study:
    storage = storage or optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep / "study.journal"))
    )
    return optuna.load_study(study_name="mnist_budget", storage=storage)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(path: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


SEARCH = (
    "hydra.sweeper.n_trials=3",
    "hydra.sweeper.heartbeat_s=1",
    "hydra.sweeper.stale_after_s=3",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=40",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)


@pytest.mark.slow
def test_a_search_killed_mid_trial_resumes_with_exactly_the_asked_trials(tmp_path, mnist_root):
    sweep = tmp_path / "search"
    process = start_search(sweep, mnist_root, *SEARCH)
    wait_for(sweep / "trial_1" / ".heartbeat")
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # mid-trial (whichever trial runs now): no save, no goodbye
    process.wait(timeout=30)
    time.sleep(4)  # the dead trial's heartbeat goes stale
    rerun = start_search(sweep, mnist_root, *SEARCH)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    trials = study_of(sweep).get_trials()
    killed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(killed) == 1 and "no heartbeat" in killed[0].user_attrs[INTERRUPTED]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and [t.user_attrs.get(RETRY_OF) for t in done].count(killed[0].number) == 1
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == 3  # no trial run twice: the killed one's retry is its only repeat
    rows = {row["job"].removesuffix(" (best)"): row for row in csv.DictReader((sweep / "summary.csv").open())}
    assert len(rows) == 4 and rows[f"trial_{killed[0].number}"]["status"].startswith("interrupted: no heartbeat")
    assert "4 jobs, 0 failed, 1 interrupted" in (sweep / "summary.md").read_text()
    print(
        f"\nkilled trial {killed[0].number}, retried as trial "
        f"{next(t.number for t in done if t.user_attrs.get(RETRY_OF) == killed[0].number)}; 3 trials complete"
    )


@pytest.mark.slow
def test_sigterm_stops_every_worker_of_a_two_worker_search_and_the_command_resumes_it(tmp_path, mnist_root):
    sweep = tmp_path / "search"
    workers = (
        "hydra/launcher=parallel",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=600",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    )
    process = start_search(sweep, mnist_root, *workers)
    wait_for(sweep / "trial_0" / ".heartbeat")
    wait_for(sweep / "trial_1" / ".heartbeat")
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    start = time.monotonic()
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 143, output[-3000:]
    while group_alive(process.pid) and time.monotonic() - start < 30:
        time.sleep(0.1)
    group_gone = time.monotonic() - start
    assert not group_alive(process.pid), "a process of the search outlived it"
    stopped = [t for t in study_of(sweep).get_trials() if INTERRUPTED in t.user_attrs]
    # Each worker was training a trial (saved at its step) or, between two trials, asked for no more.
    assert 1 <= len(stopped) <= 2 and all(
        (trial_folder(sweep, t.number) / "checkpoints" / "last.ckpt").is_file() for t in stopped
    )
    rerun = start_search(sweep, mnist_root, *workers)
    output = rerun.communicate(timeout=900)[0]
    assert rerun.returncode == 0, output[-3000:]
    complete = [t for t in study_of(sweep).get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4 and sorted(
        t.user_attrs.get(RETRY_OF) for t in complete if RETRY_OF in t.user_attrs
    ) == sorted(t.number for t in stopped)
    assert output.count("(resuming ") == len(stopped)
    print(
        f"\nSIGTERM: every process gone {group_gone:.1f} s after the signal; {len(stopped)} trial(s) saved and resumed, 4 complete"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A real PostgreSQL server: MNIST_BUDGET_TEST_POSTGRES's, or one started here in a temporary
    folder (Debian's postgresql package; .ci/run installs it) and stopped at the end."""
    if os.environ.get("MNIST_BUDGET_TEST_POSTGRES"):
        yield os.environ["MNIST_BUDGET_TEST_POSTGRES"]
        return
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        unavailable("PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does)")
    bindir, folder, port = bins[-1].parent, Path(tempfile.mkdtemp(prefix="mnist-budget-pg-")), free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    run = lambda *cmd: subprocess.run([*as_postgres, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "optuna", "--auth=trust")
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(folder / "data"),
        "-l",
        str(folder / "log"),
        "-w",
        "start",
        "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
    )
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "optuna", "study")
        yield f"postgresql+psycopg://optuna@127.0.0.1:{port}/study"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-w", "-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_study_in_postgresql(tmp_path, mnist_root, postgres_url):
    sweep = tmp_path / "search"
    result = run_cli(
        "-m",
        "hparams_search=optuna",
        f"hydra.sweep.dir={sweep}",
        f"hydra.sweeper.storage={postgres_url}",
        "hydra/launcher=parallel",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        *TINY,
        data_dir=mnist_root,
        run_dir=tmp_path / "unused",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_of(sweep, postgres_url).get_trials()
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    logs = [(sweep / f"worker_{n}" / "run.log").read_text() for n in (0, 1)]
    assert all("search worker" in log and "trial(s) run" in log for log in logs)
    ran = [int(log.split("trial(s) run")[0].rsplit(": ", 1)[1]) for log in logs]
    assert sum(ran) == 4 and min(ran) >= 1  # both workers took trials from the one study
    print(f"\nPostgreSQL, two workers: {ran[0]} + {ran[1]} trials")
