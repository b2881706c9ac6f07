"""The project's input-error base class: what a person can fix by changing an input.

:func:`sperm_d2.cli.tool_main` turns a :class:`SpermInputError` (and only that, with a few
environment errors such as a full disk) into one ``<tool>: error: <message>`` line; anything
else is a bug and keeps its traceback. Each package derives its own error types from it
(``ConfigError``, ``InputError``, ``LabelMapError``, ``CheckpointError``...), keeping the
built-in base they had (``ValueError``...) so that existing ``except`` clauses still match.
"""

from __future__ import annotations


class SpermInputError(Exception):
    """An input (argument, config, data or model file) that makes the request impossible; the
    message is one line naming the argument or file and the problem."""
