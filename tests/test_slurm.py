"""On a real SLURM cluster (cluster/slurm.sh start: one node, with accounting): a sweep of two jobs,
a job requeued by `scontrol requeue` and one warned of its time limit, each resuming with
ckpt_path=auto to the metrics of an uninterrupted run; a job past max_num_timeout ending with its
reason; SLURM's own time-limit warning reaching a job; the search's workers as SLURM jobs; DDP across two SLURM tasks. `.ci/run` starts the
cluster and stops it again; elsewhere these tests skip, saying how to start it (under CI=true they fail)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from conftest import ROOT, run_cli, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

ONE_CPU = ("hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "threads=1")
# A run long enough to be stopped mid-way (the tests wait for its second epoch): 12 epochs of 600
# batches of 64 synthetic digits.
LONG = (
    "trainer.max_epochs=12",
    "trainer.limit_train_batches=600",
    "data.batch_size=64",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.last_checkpoint.every_n_train_steps=20",
    "evaluation=every_epoch",
)


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    idle = shutil.which("sinfo") and subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
    if not idle or "idle" not in idle:
        unavailable(
            "no SLURM cluster answers here: start one with `sudo bash cluster/slurm.sh start` (docs/scale-out.md)"
        )


def history(run: Path) -> list[dict]:
    rows = json.loads((run / "results.json").read_text())["history"]
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def start_sweep(sweep: Path, data_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "MNIST_BUDGET_DATA": str(data_dir)}
    command = [sys.executable, str(ROOT / "run.py"), "-m", f"hydra.sweep.dir={sweep}", *overrides]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def array_task(sweep: Path, seconds: float = 120) -> str:
    """The SLURM id of the sweep's first job (submitit names its folder so: ``<id>`` or ``<id>_0``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = sorted(p.name for p in (sweep / ".submitit").glob("*") if p.is_dir())
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no job was submitted for {sweep}")


def wait_for_text(path: Path, text: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not (path.is_file() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.5)


def start_now(job: str, seconds: float = 300) -> None:
    """A requeued job waits for SLURM's requeue delay: start it as soon as it is pending again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()
        if state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        if state == "RUNNING":
            return
        time.sleep(1)


def test_a_sweep_of_two_jobs_runs_on_the_cluster_with_real_job_states(tmp_path, mnist_root):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        *ONE_CPU,
        "seed=1,2",
        "trainer.fast_dev_run=true",
        f"hydra.sweep.dir={sweep}",
        data_dir=mnist_root,
        run_dir=tmp_path / "x",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert all((sweep / job / "results.json").is_file() for job in ("0", "1"))
    assert (sweep / "summary.md").read_text().count("| ok |") == 2
    assert "Bypassing sacct error" not in result.stderr  # accounting answers: submitit reads real job states
    job, deadline = array_task(sweep).split("_")[0], time.monotonic() + 120
    while True:  # accounting records a job's end a moment after the job has ended
        states = subprocess.run(
            ["sacct", "-n", "-X", "-j", job, "-o", "State"], capture_output=True, text=True
        ).stdout.split()
        if states == ["COMPLETED", "COMPLETED"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert states == ["COMPLETED", "COMPLETED"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, mnist_root: Path) -> list[dict]:
    """The history of the same run, never stopped, on one thread as the SLURM jobs have."""
    run = tmp_path_factory.mktemp("reference")
    result = run_cli(*LONG, "threads=1", "seed=12345", data_dir=mnist_root, run_dir=run)
    assert result.returncode == 0, result.stderr[-3000:]
    return history(run)


def test_a_job_requeued_by_scontrol_resumes_to_the_uninterrupted_metrics(tmp_path, mnist_root, uninterrupted):
    sweep = tmp_path / "sweep"
    process = start_sweep(sweep, mnist_root, *ONE_CPU, "ckpt_path=auto", "seed=12345", *LONG)
    job = array_task(sweep)
    wait_for_text(sweep / "0" / "run.log", "    2 |")  # two epochs done: mid-run
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for_text(sweep / "0" / "failure.json", "interrupted by SIGTERM")
    start_now(job)
    output = process.communicate(timeout=900)[0]
    assert process.returncode == 0, output[-3000:]
    assert "resuming" in (sweep / "0" / "run.log").read_text()
    assert history(sweep / "0") == uninterrupted


# SLURM sends its time-limit warning "up to 60 seconds earlier than specified" (sbatch's --signal),
# so a job of a one-minute limit may get it before training starts, or after a short run has ended.
# The tests that need the warning mid-run give the job ten minutes and send it the same signal
# themselves, through SLURM, once two epochs are done: submitit counts it as the time limit's
# warning (under a ten-minute limit every warning is) and SLURM's own comes minutes later.
WARNED = ("hydra.launcher.timeout_min=10", "hydra.launcher.signal_delay_s=40")


def warn_mid_run(sweep: Path) -> None:
    """SIGUSR2 through SLURM to the sweep's first job, as its time-limit warning is sent, after two epochs."""
    job = array_task(sweep)
    wait_for_text(sweep / "0" / "run.log", "    2 |")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)


def test_a_job_warned_of_its_time_limit_saves_is_requeued_and_resumes(tmp_path, mnist_root, uninterrupted):
    sweep = tmp_path / "sweep"
    limit = (*WARNED, "hydra.launcher.max_num_timeout=3")
    process = start_sweep(sweep, mnist_root, *ONE_CPU, *limit, "ckpt_path=auto", "seed=12345", *LONG)
    warn_mid_run(sweep)
    wait_for_text(sweep / "0" / "failure.json", "interrupted by SIGUSR2")
    start_now(array_task(sweep))
    output = process.communicate(timeout=900)[0]
    assert process.returncode == 0, output[-3000:]
    assert "resuming" in (sweep / "0" / "run.log").read_text()
    assert history(sweep / "0") == uninterrupted


def test_a_job_past_max_num_timeout_ends_with_its_reason_in_the_summary(tmp_path, mnist_root):
    sweep = tmp_path / "sweep"
    process = start_sweep(sweep, mnist_root, *ONE_CPU, *WARNED, "hydra.launcher.max_num_timeout=0", *LONG)
    warn_mid_run(sweep)
    output = process.communicate(timeout=600)[0]
    assert (sweep / "summary.md").is_file(), output[-3000:]
    summary = (sweep / "summary.md").read_text()
    assert "stopped by SLURM's time limit" in summary and "max_num_timeout=0" in summary, summary
    assert "last.ckpt is saved" in summary, summary
    assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file()


def test_slurms_own_time_limit_warning_reaches_the_job_and_the_summary_says_what_was_saved(tmp_path, mnist_root):
    sweep = tmp_path / "sweep"
    # The warning is due a minute into the job and may come from its start; the run outlasts the two
    # minutes, so the warning comes first.
    limit = ("hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=60", "hydra.launcher.max_num_timeout=0")
    longer = ("trainer.max_epochs=100", *(o for o in LONG if not o.startswith("trainer.max_epochs=")))
    process = start_sweep(sweep, mnist_root, *ONE_CPU, *limit, *longer)
    output = process.communicate(timeout=600)[0]
    assert (sweep / "summary.md").is_file(), output[-3000:]
    summary = (sweep / "summary.md").read_text()
    assert "stopped by SLURM's time limit" in summary, summary
    saved = (sweep / "0" / "checkpoints" / "last.ckpt").is_file()
    assert ("last.ckpt is saved" in summary) == saved, summary  # the warning may come before the first save
    assert ("before its first checkpoint" in summary) == (not saved), summary


def test_search_workers_run_as_slurm_jobs_on_one_study(tmp_path, mnist_root):
    sweep = tmp_path / "search"
    tiny = (
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=20",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    )
    result = run_cli(
        "-m",
        "hparams_search=optuna",
        *ONE_CPU,
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        f"hydra.sweep.dir={sweep}",
        *tiny,
        data_dir=mnist_root,
        run_dir=tmp_path / "x",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "study.journal")))
    trials = optuna.load_study(study_name="mnist_budget", storage=storage).get_trials()
    assert len(trials) == 4 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    # Each worker was a SLURM job of one array (submitit's folder per job: .submitit/<array>_<task>/), and
    # what that job wrote (its --output and --error files) says which worker it was and which trials it ran.
    jobs = sorted(p.name for p in (sweep / ".submitit").glob("*_*") if p.is_dir())
    array = jobs[0].split("_")[0] if jobs else ""
    assert jobs == [f"{array}_0", f"{array}_1"], jobs
    ran = {}
    for task, job in enumerate(jobs):
        output = "".join(f.read_text() for f in sorted((sweep / ".submitit" / job).glob(f"{job}_0_log.*")))
        assert f"search worker {task} (pid " in output and f"search worker {task}: " in output, output[-3000:]
        ran[job] = {int(n) for n in re.findall(r"\btrial (\d+): [\w.]+=", output)}  # a trial's first line
    assert all(ran.values()), ran  # both jobs ran trials of the one study...
    assert sorted(n for numbers in ran.values() for n in numbers) == [t.number for t in trials]  # ...each once
    # SLURM's accounting has both jobs, run to the end (it records an end a moment after it).
    deadline = time.monotonic() + 120
    while True:
        rows = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", array, "-o", "JobID,State"], capture_output=True, text=True
        ).stdout.split()
        if sorted(rows) == [f"{job}|COMPLETED" for job in jobs] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sorted(rows) == [f"{job}|COMPLETED" for job in jobs], rows
    print("\nsearch on SLURM: " + "; ".join(f"job {job} ran trials {sorted(ran[job])}" for job in jobs))


def test_ddp_across_two_slurm_tasks_matches_lightnings_own_two_processes(tmp_path, mnist_root):
    short = (
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=20",
        "data.batch_size=64",
        "threads=1",
    )
    env = {**os.environ, "MNIST_BUDGET_DATA": str(mnist_root)}
    on_slurm = tmp_path / "srun"
    done = subprocess.run(
        [
            "srun",
            "--nodes=1",
            "--ntasks-per-node=2",
            "--cpus-per-task=1",
            sys.executable,
            str(ROOT / "run.py"),
            *short,
            f"hydra.run.dir={on_slurm}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    local = tmp_path / "local"
    assert run_cli(*short, data_dir=mnist_root, run_dir=local).returncode == 0
    results = json.loads((on_slurm / "results.json").read_text())
    assert results["processes"] == 2 and results["global_batch_size"] == 128
    assert sorted(p.name for p in on_slurm.glob("*.json")) == ["results.json"]  # rank 0 alone wrote results
    assert history(on_slurm) == history(local)
