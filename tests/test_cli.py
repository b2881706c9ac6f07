"""sperm_d2.cli: what the tools print stays one line per message, whatever the file names; input
errors are one line, bugs keep their traceback."""

import errno
import io
import logging

from sperm_d2.cli import BUG, INTERRUPTED, OneLineRecords, printable, tool_main
from sperm_d2.config import ConfigError
from sperm_d2.data.labelme_io import LabelmeError
from sperm_d2.data.labels import LabelMapError, UnknownLabelError
from sperm_d2.errors import InputError, InputNotFoundError, SpermInputError
from sperm_d2.weights_io import CheckpointError


def test_printable_escapes_control_characters_and_keeps_tabs() -> None:
    assert printable("a\nb\rc\x1bd\te") == "a\\nb\\rc\\x1bd\te"
    assert printable("plain µm ✓") == "plain µm ✓"


def test_a_log_record_naming_a_file_with_a_newline_is_one_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(OneLineRecords())
    logger = logging.getLogger("sperm_d2.test_cli")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("skipped %s: %s", "sample/bad\nname.png", "not an image")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "skipped sample/bad\\nname.png: not an image\n"


def _tool(error: BaseException, **kwargs):
    @tool_main("t.py", **kwargs)
    def main(argv=None) -> int:
        raise error

    return main


def _call(main, capsys) -> tuple[int, list[str], str]:
    code = main([])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("t.py: ")], err


def test_an_input_error_is_one_line_and_exit_2(capsys) -> None:
    problem = "ERROR a.json: not labelme"
    code, lines, err = _call(_tool(InputError("--input x: no files", [problem])), capsys)
    assert code == 2 and lines == [f"t.py: {problem}", "t.py: error: --input x: no files"]
    assert "Traceback" not in err


def test_a_bug_keeps_its_traceback_and_asks_for_a_report(capsys) -> None:
    for bug in (ValueError("bad shape"), KeyError("x"), RuntimeError("boom"), OSError("odd")):
        code, lines, err = _call(_tool(bug), capsys)
        assert code == BUG and "Traceback (most recent call last)" in err, err
        assert len(lines) == 1 and "bug" in lines[0] and type(bug).__name__ in lines[0]


def test_a_full_disk_is_one_line_with_the_tools_code(capsys) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "out/x.png")
    code, lines, err = _call(_tool(full), capsys)
    assert code == 2 and len(lines) == 1 and "No space left" in lines[0]
    assert "Traceback" not in err
    assert _call(_tool(full, environment=1), capsys)[0] == 1


def test_ctrl_c_is_one_line_and_exit_130(capsys) -> None:
    code, lines, _ = _call(_tool(KeyboardInterrupt()), capsys)
    assert code == INTERRUPTED and lines == [
        "t.py: error: interrupted (Ctrl-C); nothing unfinished was kept"
    ]


def test_the_projects_error_types_are_input_errors() -> None:
    for error in (ConfigError, InputError, LabelMapError, UnknownLabelError, LabelmeError):
        assert issubclass(error, SpermInputError)
    assert issubclass(CheckpointError, SpermInputError)
    assert issubclass(InputNotFoundError, FileNotFoundError)  # callers catching it still do
