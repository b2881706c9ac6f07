"""The tools' one error wrapper: a known error becomes ``<tool>: error: <message>`` on stderr.

Every ``tools/*.py`` has ``get_parser()`` and ``main(argv: list[str] | None = None) -> int``
decorated with :func:`tool_main`: an error a person can act on (a bad input, a missing file, a
full disk) is one line and an exit code, never a traceback; anything else still raises, so a bug
shows where it is.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, Sequence

#: what the tools catch by default, all exit 2 ("nothing was written")
INPUT_ERRORS = ((OSError, ValueError, KeyError, RuntimeError), 2)

Main = Callable[[list[str] | None], int]


#: control characters shown escaped (a file name may hold a newline), tabs kept
_ESCAPES = {c: f"\\x{c:02x}" for c in range(32) if c != 9} | {10: "\\n", 13: "\\r"}


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``...): one line, however
    the file names in it were named."""
    return text.translate(_ESCAPES)


class OneLineRecords(logging.Filter):
    """A handler filter that keeps every log record on one line (:func:`printable` on the
    formatted message; a traceback attached to the record is still printed below it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage()), None
        return True


def one_line(error: BaseException) -> str:
    """The error's message on one line (a KeyError's without the quotes ``str`` adds)."""
    msg = error.args[0] if isinstance(error, KeyError) and error.args else error
    return " ".join(str(msg).split())


#: exit code of a run stopped by Ctrl-C (SIGINT): the shells' 128 + signal number
INTERRUPTED = 130


def tool_main(
    prog: str,
    errors: Sequence[tuple[tuple[type[BaseException], ...], int]] = (INPUT_ERRORS,),
    interrupted: str = "interrupted (Ctrl-C); nothing unfinished was kept",
) -> Callable[[Main], Main]:
    """Decorate a tool's ``main(argv) -> int``: the first ``(types, exit code)`` of ``errors``
    that matches an escaping exception prints its ``problems`` (one line each, when it carries
    them, as :class:`sperm_d2.data.problems.InputError` does) and ``<prog>: error: <message>`` on
    stderr and returns the code. Ctrl-C is ``<prog>: error: <interrupted>`` and
    :data:`INTERRUPTED`, not a traceback: a person stopped it, nothing is broken (the outputs'
    staging folders and temporary files are removed on the way out, by ``finally`` blocks)."""

    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def wrapped(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except KeyboardInterrupt:
                print(f"{prog}: error: {interrupted}", file=sys.stderr)
                return INTERRUPTED
            except tuple(t for types, _ in errors for t in types) as e:
                code = next(c for types, c in errors if isinstance(e, types))
                for problem in getattr(e, "problems", None) or []:
                    print(f"{prog}: {problem}", file=sys.stderr)
                print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
                return code

        return wrapped

    return wrap


def run(main: Main, basic_logging: bool = True) -> None:
    """``if __name__ == "__main__": run(main)``: INFO logging to stderr (unless the tool sets up
    its own, as training does with detectron2's loggers), exit with ``main``'s code."""
    if basic_logging:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(OneLineRecords())
    sys.exit(main())
