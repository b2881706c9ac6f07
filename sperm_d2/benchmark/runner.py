"""One subprocess per benchmark step: tool commands run from the repo root, each logged to its own
file and kept as a command anyone can paste into a shell, with its wall and CPU time."""

from __future__ import annotations

import logging
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import sperm_d2

logger = logging.getLogger(__name__)

#: the checkout the package is installed from (editable): tools/ and configs/ live there, the
#: tools run there, and the relative paths in their commands are relative to it
REPO = Path(sperm_d2.__file__).resolve().parents[1]


class StepError(RuntimeError):
    """A tool call failed; the message names the command's log file."""


def quote(s: object) -> str:
    """``s`` as one POSIX shell word."""
    return shlex.quote(str(s))


def repo_relative(p: str | os.PathLike, repo: Path = REPO) -> str:
    """``p`` relative to ``repo`` when inside it (shorter, copy-pasteable commands), else
    absolute."""
    p = Path(os.path.abspath(p))
    try:
        return str(p.relative_to(repo))
    except ValueError:
        return str(p)


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Runner:
    """Runs tool commands from ``repo``, logging each to ``log_dir`` and keeping the list."""

    def __init__(self, log_dir: Path, repo: Path = REPO) -> None:
        self.log_dir = log_dir
        self.repo = repo
        self.commands: list[str] = []
        self.seconds: dict[str, float] = {}  # log name -> wall time of the step
        # log name -> CPU time (user + sys) of the step: unlike wall time it does not grow when
        # other jobs share the cores, so it is what estimates the time on an idle machine
        self.cpu_seconds: dict[str, float] = {}

    def rel(self, p: str | os.PathLike) -> str:
        """``p`` as the commands spell it: relative to the repo when inside it."""
        return repo_relative(p, self.repo)

    def record(self, cmd: Sequence[str], comment: str = "") -> str:
        """Add ``cmd`` to :attr:`commands` as users would type it (``python``, shell-quoted),
        with an optional ``# comment``; returns the shown command."""
        shown = " ".join(quote("python" if c == sys.executable else c) for c in cmd)
        self.commands.append(f"{shown}  # {comment}" if comment else shown)
        return shown

    def __call__(self, cmd: Sequence[str], log_name: str, ok: Sequence[int] = (0,)) -> int:
        """Run ``cmd`` into ``log_dir/<log_name>.log``; returns its exit status, raises
        :class:`StepError` (naming the log, with its last lines) when that is not in ``ok``."""
        shown = self.record(cmd)  # run with this interpreter, shown as ``python``
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{log_name}.log"
        logger.info("$ %s", shown)
        t0, cpu0 = time.perf_counter(), children_cpu_seconds()
        with open(log, "w", encoding="utf-8") as f:
            rc = subprocess.call(list(cmd), cwd=self.repo, stdout=f, stderr=subprocess.STDOUT)
        self.seconds[log_name] = round(time.perf_counter() - t0, 1)
        self.cpu_seconds[log_name] = round(children_cpu_seconds() - cpu0, 1)
        logger.info(
            "  -> exit %s in %.0f s (%.0f CPU s), log %s",
            rc,
            self.seconds[log_name],
            self.cpu_seconds[log_name],
            log,
        )
        if rc not in ok:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
            raise StepError(f"{Path(cmd[1]).name} exited {rc} (see {log}): {' | '.join(tail)}")
        return rc
