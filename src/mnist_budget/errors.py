"""The one exception type that the command line turns into a single-line message."""


class UserError(Exception):
    """Bad input from the user: the message names the bad value and how to fix it.

    ``run.py`` prints it as one line and exits non-zero instead of showing a traceback.
    """
