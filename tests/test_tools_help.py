"""Every CLI under tools/ answers --help (imports cleanly, parser builds) and exits 0."""

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

TOOLS = sorted((REPO / "tools").glob("*.py"))


@pytest.mark.parametrize("tool", TOOLS, ids=[t.name for t in TOOLS])
def test_tool_help_exits_zero(tool: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(tool), "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()
    # known-harmless library warnings are filtered (sperm_d2.cli_warnings); nothing else prints
    assert "Warning" not in proc.stderr, proc.stderr


def test_there_are_tools() -> None:
    assert TOOLS, "tools/ holds no CLI"
