"""The tools' one error wrapper: an input error becomes ``<tool>: error: <message>`` on stderr;
a bug stays a bug.

Every ``tools/*.py`` has ``get_parser()`` and ``main(argv: list[str] | None = None) -> int``
decorated with :func:`tool_main`. An error a person can act on without changing the code — the
project's own input errors (:class:`sperm_d2.errors.SpermInputError` and its subclasses:
``ConfigError``, ``InputError``, ``LabelMapError``, ``CheckpointError``...), a full disk or a
read-only file system — is one line and an exit code, never a traceback. Anything else is a bug:
its traceback is printed, then one line asking for a bug report, and the exit code is
:data:`BUG` (70, ``EX_SOFTWARE`` of sysexits.h), distinct from the tools' 1 ("done, but files
were skipped").
"""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import sys
import traceback
from typing import Callable, Sequence

from sperm_d2.errors import SpermInputError

#: what the tools turn into one line by default, all exit 2 ("nothing was written")
INPUT_ERRORS = ((SpermInputError,), 2)
#: ``OSError`` numbers of the machine rather than the code (disk full, quota, read-only file
#: system): one line, exit code ``environment`` of :func:`tool_main`
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: exit code of an unexpected error (a bug): traceback, then one line asking for a report
BUG = 70

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
    environment: int = 2,
) -> Callable[[Main], Main]:
    """Decorate a tool's ``main(argv) -> int``: the first ``(types, exit code)`` of ``errors``
    that matches an escaping exception prints its ``problems`` (one line each, when it carries
    them, as :class:`sperm_d2.errors.InputError` does) and ``<prog>: error: <message>`` on
    stderr and returns the code; an ``OSError`` of :data:`ENVIRONMENT_ERRNOS` (a full disk) is
    one line too, exit ``environment``. Anything else prints its traceback and ``<prog>: error:
    this is a bug...`` and returns :data:`BUG`. Ctrl-C is ``<prog>: error: <interrupted>`` and
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
            except Exception as e:  # noqa: BLE001 - sorted below: input error or bug
                code = next((c for types, c in errors if isinstance(e, types)), None)
                if code is None and isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
                    code = environment
                if code is None:
                    traceback.print_exception(e, file=sys.stderr)
                    print(
                        f"{prog}: error: unexpected {type(e).__name__} ({one_line(e)[:200]}): "
                        "this is a bug in sperm_d2, not in your input; please report it with "
                        "the traceback above and the command",
                        file=sys.stderr,
                    )
                    return BUG
                for problem in getattr(e, "problems", None) or []:
                    print(f"{prog}: {problem}", file=sys.stderr)
                print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
                return code

        return wrapped

    return wrap


class _DeprecatedFlag(argparse.Action):
    """An old flag name kept for one release: stores into the new flag's ``dest`` and prints one
    warning line naming the new flag."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"{parser.prog}: warning: {option_string} is deprecated and goes in the next "
            f"release; use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Accept ``old`` as a hidden, deprecated spelling of the already added flag ``new``: same
    type, choices and destination; using it prints ``<prog>: warning: <old> is deprecated ...;
    use <new>`` once. ``--help`` and README show only ``new``."""
    action = next(a for a in parser._actions if new in a.option_strings)
    parser.add_argument(
        old,
        dest=action.dest,
        type=action.type,
        choices=action.choices,
        nargs=action.nargs,
        metavar=action.metavar,
        default=argparse.SUPPRESS,  # the new flag's default stands
        action=_DeprecatedFlag,
        new=new,
        help=argparse.SUPPRESS,
    )


#: help of ``--opts``, the one config-override flag of every tool that builds a config
OPTS_HELP = "config overrides KEY VALUE ... (last on the command line)"


def add_opts_argument(parser: argparse.ArgumentParser, trailing: bool = False) -> None:
    """``--opts KEY VALUE ...``: every tool that builds a config takes its overrides this way
    (detectron2's demo). ``trailing=True`` for a parser that also takes them bare at the end, as
    detectron2's own ``train_net.py`` and ``visualize_data.py`` do (its positional ``opts``):
    both then work, and :func:`config_overrides` joins them."""
    dest = "opts_flag" if trailing else "opts"
    parser.add_argument("--opts", dest=dest, nargs=argparse.REMAINDER, default=[], help=OPTS_HELP)


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The ``KEY VALUE`` overrides of a parser built with ``add_opts_argument(trailing=True)``:
    the trailing ones, then those after ``--opts`` (also when ``--opts`` follows trailing ones,
    where argparse leaves it inside the trailing list)."""
    trailing = [t for t in (getattr(args, "opts", None) or []) if t != "--opts"]
    return trailing + list(getattr(args, "opts_flag", None) or [])


def start(main: Main, basic_logging: bool = True) -> None:
    """``if __name__ == "__main__": start(main)``: INFO logging to stderr (unless the tool sets up
    its own, as training does with detectron2's loggers), exit with ``main``'s code."""
    if basic_logging:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(OneLineRecords())
    sys.exit(main())
