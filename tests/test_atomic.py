"""Atomic outputs: a failed write leaves the old file, JSON output is strict (no NaN)."""

import json
import math

import numpy as np
import pytest

from sperm_d2 import atomic
from sperm_d2.atomic import atomic_write, json_safe, write_json_atomic


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_json_is_strict_nan_and_numpy_become_plain(tmp_path):
    obj = {
        "AP": float("nan"),
        "inf": math.inf,
        "np": np.float32(0.25),
        "arr": np.array([1, 2]),
        "nested": [{"x": np.float64("nan")}, (1, 2.5)],
    }
    write_json_atomic(tmp_path / "m.json", obj)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    # the standard library's strict parser refuses NaN constants
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert back == {
        "AP": None,
        "inf": None,
        "np": 0.25,
        "arr": [1, 2],
        "nested": [{"x": None}, [1, 2.5]],
    }
    assert json_safe({"a": 1, "b": "s", "c": None, "d": True}) == {
        "a": 1,
        "b": "s",
        "c": None,
        "d": True,
    }


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_UMASK", 0o022)
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
