"""The project's input errors: what a person fixes by changing an input, not the code.

:func:`sperm_d2.cli.tool_main` turns a :class:`SpermInputError` (and, of the rest, only a full
disk or a read-only file system) into one ``<tool>: error: <message>`` line; anything else is a
bug and keeps its traceback. Each package derives its own error types from it
(``ConfigError``, ``LabelMapError``, ``LabelmeError``, ``CheckpointError``...), keeping the
built-in base they had (``ValueError``...) so that existing ``except`` clauses still match.
"""

from __future__ import annotations

from typing import Any, Iterable


class SpermInputError(Exception):
    """An input (argument, config, data or model file) that makes the request impossible; the
    message is one line naming the argument or file and the problem."""


class InputError(SpermInputError, ValueError):
    """Arguments or inputs that make a whole run impossible (not one bad file among many).

    The message is one line naming the argument, file or folder; ``problems`` holds the per-file
    problems found before giving up (e.g. when every file was skipped), to be reported too
    (:class:`sperm_d2.data.problems.Problem`, one line each).
    """

    def __init__(self, message: str, problems: Iterable[Any] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class InputNotFoundError(SpermInputError, FileNotFoundError):
    """A file or folder an argument names does not exist (or lacks what it must hold)."""
