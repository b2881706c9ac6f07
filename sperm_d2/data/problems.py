"""Problems found while reading inputs: one line each, naming the file; counted by kind."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

ERROR = "error"  # the file is skipped
WARNING = "warning"  # the file is kept, something in it was fixed or dropped


@dataclass(frozen=True)
class Problem:
    """One problem: ``kind`` is a short stable key (for counting), ``message`` a full line."""

    level: str
    kind: str
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()} {self.file}: {self.message}"

    def to_dict(self) -> dict:
        return {"level": self.level, "kind": self.kind, "file": self.file, "message": self.message}


def count_problems(problems: Iterable[Problem]) -> dict[str, dict[str, int]]:
    """``{"error": {kind: n}, "warning": {kind: n}}``."""
    out: dict[str, Counter] = {ERROR: Counter(), WARNING: Counter()}
    for p in problems:
        out[p.level][p.kind] += 1
    return {level: dict(sorted(c.items())) for level, c in out.items()}


class InputError(ValueError):
    """Arguments or inputs that make a whole run impossible (not one bad file among many).

    The message is one line naming the argument, file or folder; ``problems`` holds the per-file
    problems found before giving up (e.g. when every file was skipped), to be reported too.
    """

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)
