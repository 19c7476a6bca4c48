"""The one exception type that the command line turns into a single-line message."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message names the bad value and how to fix it.

    ``run.py`` prints it as one line and exits non-zero instead of showing a traceback.
    """


def find_user_error(err: BaseException) -> UserError | None:
    """The UserError behind ``err``: itself, or the cause that a library (say Hydra's instantiate) wrapped."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def first_line(err: BaseException, limit: int = 200) -> str:
    """A library's error in one line for a UserError message: its first non-empty line, else its type."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(err).__name__


class Interrupted(Exception):
    """A run stopped by a signal (SIGTERM, Ctrl-C): the message is the one line that says where it
    stopped and how to resume; ``run.py`` prints it and exits with ``exit_code`` (128 + the signal)."""

    def __init__(self, message: str, exit_code: int, where: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.where = where or message  # where it stopped, without the command (a search resumes by itself)
