"""A quiet console: the run's own lines once each; everything else goes to the run's log file.

Hydra sends every log record to two handlers (conf/hydra/default.yaml, ``job_logging``): the
run's log file (``run.log``: every record, timestamped) and the console, whose ``ConsoleFilter``
passes this project's INFO lines (hardware and precision, the parameter count, one line per
epoch, the result and the run folder) and any library's errors. Lightning's own lines (devices
found, the model summary, its tips) and Python warnings go to the file only.
"""

from __future__ import annotations

import logging

PROJECT = "mnist_budget"
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


class ConsoleFilter(logging.Filter):
    """Pass this project's records at INFO and above, and any other logger's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
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
