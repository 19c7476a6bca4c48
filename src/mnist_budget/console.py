"""A quiet console: the run's own lines once each; everything else goes to the run's log file.

Hydra sends every log record to two handlers (conf/hydra/default.yaml, ``job_logging``): the
run's log file (``run.log``: every record, timestamped) and the console, whose ``ConsoleFilter``
passes this project's INFO lines (hardware and precision, the parameter count, one line per
epoch, the result and the run folder) and any library's errors. Lightning's own lines (devices
found, the model summary, its tips) and Python warnings go to the file only.

In a distributed run (``trainer=ddp_cpu``, ``trainer=ddp``) every process logs the same lines;
only rank 0 prints them. The other ranks' consoles show their errors only; each rank's log file
(rank 0: ``run.log``, rank N: ``train_ddp_process_N.log``) still gets every record.
"""

from __future__ import annotations

import logging
import os
import sys

PROJECT = "mnist_budget"
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
# Where a launcher puts a process's rank, in the order Lightning reads them
# (lightning.fabric.utilities.rank_zero._get_rank).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """This process's global rank: 0 outside a distributed run.

    Lightning's ``rank_zero_only.rank`` once Lightning is loaded (its strategy sets it to the global
    rank); before that (the run's first lines), the variables its launcher sets for the processes it
    starts. Lightning is not imported here: the command line's first checks run without it.
    """
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    if rank_zero is not None and getattr(rank_zero.rank_zero_only, "rank", None) is not None:
        return int(rank_zero.rank_zero_only.rank)
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


class ConsoleFilter(logging.Filter):
    """Pass this project's records at INFO and above, and any other logger's errors; on a rank other
    than 0, errors only (rank 0 prints the run's lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if process_rank() != 0:
            return record.levelno >= logging.ERROR
        if record.name == PROJECT or record.name.startswith(PROJECT + "."):
            return record.levelno >= logging.INFO
        return record.levelno >= logging.ERROR


def route_library_logs() -> None:
    """Send Lightning's records through Hydra's handlers, once; called where Lightning is imported
    (mnist_budget.training.builders).

    Importing Lightning gives its loggers console handlers of their own (then a line appears
    twice, once by them and once by Hydra's handler, and the model summary and device lines reach
    the console); Python warnings are captured as log records, so that they reach the log file
    instead of the console.
    """
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    logging.captureWarnings(True)
