"""The known-harmless library warnings the command-line tools hide, listed one by one.

Each entry names the category, a regular expression matched against the start of the message and
why it is harmless here, so a warning that is *not* listed still shows: nothing is silenced
wholesale. ``tools/*.py`` install the list by importing :mod:`sperm_d2.cli_warnings` before any
module that loads torch or detectron2 (most of these fire at import time). The library itself
installs nothing: programs importing ``sperm_d2`` keep their own warning settings. The tests hide
the same list (``tests/conftest.py``: ``pytest_configure``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings


@dataclasses.dataclass(frozen=True)
class KnownWarning:
    """One harmless warning: ``message`` is a regex matched at the start of its text."""

    category: type[Warning]
    message: str
    why: str


KNOWN_HARMLESS: tuple[KnownWarning, ...] = (
    KnownWarning(
        FutureWarning,
        r"`torch\.jit\.script` is deprecated",
        "detectron2 decorates a few layers with torch.jit.script at import time",
    ),
    KnownWarning(
        UserWarning,
        r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing",
        "detectron2's anchor generator calls torch.meshgrid without indexing=; the result is the "
        "same ('ij')",
    ),
    KnownWarning(
        UserWarning,
        r"The given NumPy array is not writable",
        "fvcore/detectron2 wrap read-only arrays in tensors that are never written",
    ),
    KnownWarning(
        UserWarning,
        r"pkg_resources is deprecated as an API",
        "detectron2.model_zoo imports pkg_resources (setuptools < 82 is pinned for it)",
    ),
    KnownWarning(
        DeprecationWarning,
        r"__array__ implementation doesn't accept a copy keyword",
        "pycocotools' arrays under numpy 2; the copies it makes are correct",
    ),
)

#: torch messages sent through ``logging`` rather than ``warnings``: (logger name, message regex)
KNOWN_HARMLESS_LOGS: tuple[tuple[str, str], ...] = (
    # detectron2 asks torch.fx whether it is tracing; torch logs that the answer changed meaning
    ("torch.fx._symbolic_trace", r"is_fx_tracing will return true for both fx\.symbolic_trace"),
)


class _DropKnownLogs(logging.Filter):
    """Drops the log records of :data:`KNOWN_HARMLESS_LOGS` for one logger."""

    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(p.match(text) for p in self.patterns)


def filter_known_warnings() -> None:
    """Hide every warning of :data:`KNOWN_HARMLESS` and log record of :data:`KNOWN_HARMLESS_LOGS`
    (idempotent: calling it again adds nothing). Any other warning is left as it was."""
    for known in KNOWN_HARMLESS:
        warnings.filterwarnings("ignore", message=known.message, category=known.category)
    by_logger: dict[str, list[str]] = {}
    for name, pattern in KNOWN_HARMLESS_LOGS:
        by_logger.setdefault(name, []).append(pattern)
    for name, patterns in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownLogs) for f in logger.filters):
            logger.addFilter(_DropKnownLogs(patterns))
