"""Problems found while reading inputs: one line each, naming the file; counted by kind."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from sperm_d2.errors import InputError
from sperm_d2.file_walk import SYMLINK_LOOP, WalkProblem

__all__ = [
    "ERROR",
    "WARNING",
    "InputError",
    "Problem",
    "check_seed",
    "count_problems",
    "first_line",
    "walk_problem",
]

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


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, cut to a line's length (its type's name when it
    has none): for a one-line problem."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def walk_problem(w: WalkProblem, rel: str) -> Problem:
    """A folder :func:`sperm_d2.file_walk.walk_files` did not walk, named ``rel``: an error for
    one it could not read (its files are skipped), a warning for a link loop (nothing is lost:
    the files are listed under the folder it loops back to)."""
    return Problem(WARNING if w.kind == SYMLINK_LOOP else ERROR, w.kind, rel, w.reason)


def check_seed(seed: int, flag: str = "--seed") -> None:
    """One line naming ``flag`` for a seed numpy's generators do not take (every data tool's
    rule: an integer in [0, 2**32))."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InputError(f"{flag} {seed}: expected an integer in [0, 2**32)")
