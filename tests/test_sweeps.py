"""Sweeps on Hydra's own engines: a parallel (joblib) sweep, a local submitit sweep, and an Optuna
search in SQLite that a second run continues, each ending with the sweep summary (more of the
search: tests/test_search.py)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR, run_cli
from mnist_budget.reporting.tables import sweep_summary

FAST = ("trainer.fast_dev_run=true",)


def summary_rows(sweep: Path) -> list[dict[str, str]]:
    assert (sweep / "summary.md").is_file()
    return list(csv.DictReader((sweep / "summary.csv").open()))


def test_the_slurm_launcher_config_composes():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert {"partition", "gpus_per_node", "cpus_per_task", "timeout_min", "array_parallelism"} <= set(launcher)


def test_summary_marks_the_best_validation_job_and_lists_failures(tmp_path):
    for job, (acc, val) in enumerate([(0.99, 0.98), (0.98, 0.99)]):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / "results.json").write_text(
            json.dumps(
                {
                    "overrides": [f"optim.lr={0.1 * (job + 1)}", "seed=1"],
                    "params": 10,
                    "epochs": 2,
                    "best_val_acc": val,
                    "test_acc": acc,
                    "train_seconds": 3.0,
                }
            )
        )
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "failure.json").write_text(
        json.dumps({"overrides": ["optim.lr=-1", "seed=1"], "error": "bad lr"})
    )
    header, rows = sweep_summary(tmp_path)
    assert header[:2] == ["job", "optim.lr"] and "seed" not in header  # only what varies
    assert rows[1][0] == "1 (best)" and rows[0][0] == "0"  # by validation accuracy, not test accuracy
    assert rows[2][-1] == "failed: bad lr"


def test_summary_ranks_by_the_metric_the_sweep_optimised_and_shortens_long_values(tmp_path):
    # job 0: the best epoch was better; job 1: the final weights are better (what val/acc ranks)
    for job, (best, final) in enumerate([(0.995, 0.990), (0.993, 0.992)]):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / "results.json").write_text(
            json.dumps(
                {
                    "overrides": [f"optim.lr={0.30752727452766 + job}"],
                    "params": 10,
                    "epochs": 2,
                    "best_val_acc": best,
                    "history": [{"val/acc": best}, {"val/acc": final}],
                    "optimized_metric": "val/acc",
                    "test_acc": 0.99,
                    "train_seconds": 3.0,
                }
            )
        )
    header, rows = sweep_summary(tmp_path)
    assert [row[0] for row in rows] == ["0", "1 (best)"]
    assert [row[1] for row in rows] == ["0.3075", "1.308"]
    assert rows[1][header.index("final val acc")] == "99.20 %"


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["parallel", "submitit_local"])
def test_a_two_job_sweep_on_a_launcher(mnist_root, tmp_path, launcher):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        f"hydra/launcher={launcher}",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
        *FAST,
        data_dir=mnist_root,
        run_dir=tmp_path / "unused",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = summary_rows(sweep)
    assert [row["seed"] for row in rows] == ["1", "2"] and all(row["status"] == "ok" for row in rows)
    assert sum(row["job"].endswith("(best)") for row in rows) == 1
    for job in ("0", "1"):
        assert (sweep / job / "results.json").is_file()
    if launcher == "parallel":  # two jobs at once share the cores: one torch thread each here
        logs = [(sweep / job / "run.log").read_text() for job in ("0", "1")]
        cores = os.sched_getaffinity(0)
        assert all(f"{max(1, len(cores) // 2)} threads" in log for log in logs)


@pytest.mark.slow
def test_optuna_search_in_sqlite_continues_and_records_failed_trials(mnist_root, tmp_path):
    import optuna

    logs = tmp_path / "outputs"
    common = (
        "hparams_search=optuna_sqlite",
        f"paths.log_dir={logs}",
        "hydra.sweeper.params={optim.lr:'choice(0.1,-1.0)'}",  # a bad lr makes a trial fail
        *FAST,
    )
    outputs = {}
    for attempt, total in (("first", 2), ("second", 4)):  # n_trials is the study's total: the second run adds 2
        result = run_cli(
            *common,
            f"hydra.sweeper.n_trials={total}",
            f"hydra.sweep.dir={tmp_path / attempt}",
            data_dir=mnist_root,
            run_dir=tmp_path / "unused",
        )
        # A trial that fails is recorded and the search goes on: the command itself succeeds.
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[attempt] = result.stdout + result.stderr
    database = logs / "optuna" / "mnist_budget.db"
    assert database.is_file()
    trials = optuna.load_study(study_name="mnist_budget", storage=f"sqlite:///{database}").get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]  # the second run continued the study: 2 + 2 trials
    # Every trial with the bad lr failed, every other one completed, and the search (its sampler seeded:
    # conf/hydra/sweeper/optuna_search.yaml) drew both.
    outcomes = {(t.params["optim.lr"], t.state.name) for t in trials}
    assert outcomes == {(0.1, "COMPLETE"), (-1.0, "FAIL")}, outcomes
    fails = sum(t.state.name == "FAIL" for t in trials)
    assert f"4 of 4 trials ({4 - fails} complete, {fails} fail)" in outputs["second"], outputs["second"][-3000:]
    failed = {
        (attempt, row["job"]): row["status"]
        for attempt in ("first", "second")
        for row in summary_rows(tmp_path / attempt)
        if row["status"].startswith("failed")
    }
    assert len(failed) == fails  # every failed trial is in its run's summary, with its line naming the bad setting
    assert all("optim" in status and "-1.0" in status for status in failed.values()), failed


@pytest.mark.slow
def test_two_process_cpu_ddp_fits_and_tests_once(mnist_root, tmp_path):
    run = tmp_path / "ddp"
    result = run_cli(
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=10",
        "data.batch_size=64",
        data_dir=mnist_root,
        run_dir=run,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["processes"] == 2 and results["global_batch_size"] == 128
    assert sum(map(sum, results["confusion_matrix"])) == 10_000  # both shards of the test set, once each
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran in the same folder
    assert sorted(p.name for p in run.glob("*.json")) == ["results.json"]


def test_summary_lists_an_interrupted_job_as_interrupted(tmp_path):
    from mnist_budget.reporting.tables import write_sweep_summary

    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "results.json").write_text(
        json.dumps(
            {
                "overrides": ["seed=1"],
                "params": 10,
                "epochs": 2,
                "best_val_acc": 0.9,
                "test_acc": 0.9,
                "train_seconds": 3.0,
            }
        )
    )
    (tmp_path / "1").mkdir()
    line = "interrupted by SIGTERM in epoch 2, saved at step 17 in x/last.ckpt; resume with: python run.py seed=2 ckpt_path=last"
    (tmp_path / "1" / "failure.json").write_text(
        json.dumps({"status": "interrupted", "error": line, "overrides": ["seed=2"]})
    )
    write_sweep_summary(tmp_path)
    rows = summary_rows(tmp_path)
    assert rows[1]["status"] == f"interrupted: {line}"
    assert "2 jobs, 0 failed, 1 interrupted" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_sigterm_stops_a_parallel_sweep_and_every_worker_and_the_sweep_resumes(mnist_root, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    sweep = tmp_path / "sweep"
    jobs = ("hydra/launcher=parallel", "seed=1,2,3", "trainer.max_epochs=2", "trainer.limit_train_batches=400")
    env = {**os.environ, "MNIST_BUDGET_DATA": str(mnist_root)}
    command = [sys.executable, str(ROOT / "run.py"), "-m", *jobs, f"hydra.sweep.dir={sweep}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not all(
        (sweep / job / "run.log").is_file() and "    1 |" in (sweep / job / "run.log").read_text() for job in "01"
    ):
        assert time.monotonic() < deadline, "the first two jobs never finished an epoch"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    start = time.monotonic()
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 143, stderr[-3000:]
    while time.monotonic() - start < 30:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("a process of the sweep outlived it")
    gone = time.monotonic() - start
    rows = summary_rows(sweep)
    assert [row["status"].split(":")[0] for row in rows] == ["interrupted"] * 3
    assert "saved at step" in rows[0]["status"] and "not started" in rows[2]["status"]
    assert all((sweep / job / "checkpoints" / "last.ckpt").is_file() for job in "01")
    resumed = run_cli(
        "-m", *jobs, f"hydra.sweep.dir={sweep}", "ckpt_path=auto", data_dir=mnist_root, run_dir=tmp_path / "x"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [row["status"] for row in summary_rows(sweep)] == ["ok"] * 3
    print(f"\nSIGTERM to a parallel sweep: every process gone {gone:.1f} s later; resumed to the end")
