"""The console in a distributed run: rank 0 prints the run's lines, the other ranks only their errors
(every rank's log file keeps every record: the filter sits on the console handler only)."""

from __future__ import annotations

import logging
import sys

import pytest

from mnist_budget.console import RANK_VARIABLES, ConsoleFilter, process_rank

RANK_ZERO = "lightning.fabric.utilities.rank_zero"


def record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "a line", None, None)


@pytest.fixture
def no_rank(monkeypatch):
    """A process outside any distributed run, Lightning not yet imported."""
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, RANK_ZERO, raising=False)


def test_outside_a_distributed_run_the_process_is_rank_0_and_prints_its_lines(no_rank):
    assert process_rank() == 0
    console = ConsoleFilter()
    assert console.filter(record("mnist_budget.tasks.train", logging.INFO))
    assert not console.filter(record("lightning.pytorch", logging.INFO))
    assert console.filter(record("lightning.pytorch", logging.ERROR))


def test_a_process_that_lightnings_launcher_started_prints_only_its_errors(no_rank, monkeypatch):
    # Lightning's subprocess launcher (trainer=ddp_cpu) starts rank 1 with LOCAL_RANK=1: its first
    # lines ("run folder", "hardware") are logged before Lightning is imported.
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_rank() == 1
    console = ConsoleFilter()
    assert not console.filter(record("mnist_budget.tasks.train", logging.INFO))
    assert not console.filter(record("mnist_budget.training.callbacks", logging.WARNING))
    assert console.filter(record("mnist_budget.tasks.train", logging.ERROR))
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert console.filter(record("mnist_budget.tasks.train", logging.INFO))


def test_once_lightning_runs_its_global_rank_decides(monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "0")  # a second node's first process: local rank 0, global rank 2
    monkeypatch.setattr(rank_zero_only, "rank", 2)
    assert process_rank() == 2
    assert not ConsoleFilter().filter(record("mnist_budget.tasks.train", logging.INFO))
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert ConsoleFilter().filter(record("mnist_budget.tasks.train", logging.INFO))
