"""sperm_d2.cli: what the tools print stays one line per message, whatever the file names."""

import io
import logging

from sperm_d2.cli import OneLineRecords, printable


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
