"""Stopping a sweep or a search that runs its jobs in other processes, with nothing left behind.

A process that started workers (the joblib launcher's loky processes, a search's workers) passes
SIGTERM on to them (``pass_on_sigterm``): each saves its run at the step in progress
(mnist_budget.training.callbacks.Interruption) and is listed as interrupted. Ctrl-C reaches every
process of the terminal's group by itself, so it is only noted here. ``stopped_marker`` in the
sweep folder tells jobs that had not started yet not to start; a new launch removes it. Stdlib
only: the Hydra plug-ins import it while Hydra starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STOP = threading.Event()  # a stop was asked for in this process
STOP_SIGNAL: list[int] = []  # the signal that asked for it
MARKER = ".stopped"


def request_stop(signum: int, frame: Any = None) -> None:
    STOP_SIGNAL.append(signum)
    STOP.set()


def stopped_marker(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / MARKER


def child_processes(parent: int) -> list[int]:
    """The processes ``parent`` started (Linux's /proc), but for the resource trackers of joblib
    and multiprocessing, which clean up after the workers and must outlive them."""
    children = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"resource_tracker" not in command:
            children.append(int(entry.name))
    return children


def pass_on_sigterm(signum: int, frame: Any = None) -> None:
    """Note the stop, and hand SIGTERM to the workers this process started."""
    request_stop(signum)
    for pid in child_processes(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def stoppable(sweep_dir: str | Path) -> Iterator[None]:
    """While the block launches and waits for workers: SIGTERM is passed on to them, Ctrl-C is
    noted (the terminal sends it to the workers), and either leaves the marker that keeps jobs that
    have not started from starting."""
    marker = stopped_marker(sweep_dir)
    marker.unlink(missing_ok=True)

    def stop(signum: int, frame: Any) -> None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        (pass_on_sigterm if signum == signal.SIGTERM else request_stop)(signum, frame)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_code() -> int:
    """128 + the signal that stopped the sweep (SIGTERM unless told)."""
    return 128 + (STOP_SIGNAL[0] if STOP_SIGNAL else signal.SIGTERM)
