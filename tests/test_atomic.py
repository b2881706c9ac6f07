"""Atomic outputs: a failed write leaves the old file, JSON output is strict (no NaN), a killed
run's staging folder is removed by the next run."""

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sperm_d2 import atomic, output_folder
from sperm_d2.atomic import atomic_write, json_safe, write_json_atomic
from sperm_d2.output_folder import STAGING_LOCK, staged_dir


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
    monkeypatch.setattr(atomic, "UMASK", 0o022)
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


_STAGE_AND_WAIT = """
import sys, time
from sperm_d2.output_folder import staged_dir
with staged_dir(sys.argv[1]) as tmp:
    (tmp / "overlay.png").write_bytes(b"x" * 1000)
    print(tmp, flush=True)
    time.sleep(120)
"""


def _paused_run(script: str, path) -> tuple[subprocess.Popen, str]:
    """A process running ``script`` on ``path``, paused mid-write; and the temporary path it
    printed (its staging folder or temporary file)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip()


def _staging_run(out) -> tuple[subprocess.Popen, str]:
    """A process building ``out`` in its staging folder, stopped mid-run; and that folder."""
    return _paused_run(_STAGE_AND_WAIT, out)


@pytest.mark.skipif(output_folder.fcntl is None, reason="staging locks need POSIX fcntl")
def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "infer"
    killed, stale = _staging_run(out)
    os.kill(killed.pid, signal.SIGKILL)  # no finally runs: its staging folder stays
    killed.wait(30)
    assert os.path.isdir(stale)
    live, busy = _staging_run(out)  # the killed run's locks died with it
    try:
        assert busy and os.path.isdir(busy)
        assert not os.path.exists(stale)  # nobody held its lock
        with pytest.raises(output_folder.OutputBusyError, match="another run is writing"):
            with staged_dir(out):  # a second run into the folder a live run writes: refused
                pass
        assert os.path.isdir(busy) and not out.exists()  # the live run's folder left alone
    finally:
        live.kill()
        live.wait(30)
    with staged_dir(out) as tmp:
        (tmp / "summary.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # no lock file in it
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_staging_without_a_lock_file_is_left_alone(tmp_path):
    other = tmp_path / ".infer.abc123.partial"  # e.g. caught between its steps
    other.mkdir()
    with staged_dir(tmp_path / "infer") as tmp:
        assert (tmp / STAGING_LOCK).is_file() or output_folder.fcntl is None
    assert other.is_dir()


def test_an_output_symlink_keeps_its_link_and_gets_the_new_outputs(tmp_path):
    target = tmp_path / "nas" / "results"
    target.mkdir(parents=True)
    (target / "old.csv").write_text("earlier run")
    link = tmp_path / "out"
    link.symlink_to(target, target_is_directory=True)
    with staged_dir(link) as tmp:
        (tmp / "new.csv").write_text("this run")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert sorted(p.name for p in target.iterdir()) == ["new.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nas", "out"]  # nothing left beside
    assert sorted(p.name for p in (tmp_path / "nas").iterdir()) == ["results"]


_WRITE_AND_WAIT = """
import sys, time
from pathlib import Path
from sperm_d2.atomic import atomic_write
path = Path(sys.argv[1])
with atomic_write(path, "wb") as f:
    f.write(b"x" * 1000)
    f.flush()
    print(*path.parent.glob(f".{path.name}.*.tmp"), flush=True)
    time.sleep(120)
"""


def _writing_run(path) -> tuple[subprocess.Popen, str]:
    """A process writing ``path`` through atomic_write, stopped mid-write; and its temp file."""
    return _paused_run(_WRITE_AND_WAIT, path)


@pytest.mark.skipif(atomic.fcntl is None, reason="temporary-file locks need POSIX fcntl")
def test_a_killed_writers_temporary_file_is_removed_a_live_ones_is_not(tmp_path):
    killed, stale = _writing_run(tmp_path / "model_0000499.pth")
    os.kill(killed.pid, signal.SIGKILL)  # no finally runs: the half-written file stays
    killed.wait(30)
    assert os.path.isfile(stale)
    live, busy = _writing_run(tmp_path / "model_0000999.pth")
    other = tmp_path / ".notes.txt.abc.tmp"  # another file's temporary: not matched
    other.write_text("x")
    try:
        assert atomic.remove_stale_temps(tmp_path, "model_*.pth") == [Path(stale)]
        assert not os.path.exists(stale) and os.path.isfile(busy) and other.is_file()
    finally:
        live.kill()
        live.wait(30)
    # the lock died with the live writer: its file is now stale too
    assert atomic.remove_stale_temps(tmp_path, "model_*.pth") == [Path(busy)]
    assert not (tmp_path / "model_0000499.pth").exists()  # nothing was renamed into place


def test_an_existing_output_in_a_read_only_folder_is_refused_in_one_line(tmp_path, monkeypatch):
    """The outputs are staged beside the output folder: an existing (empty, writable) output
    folder whose parent is read-only is refused before any work, naming the parent (it was a
    PermissionError traceback on the lock file). ``os.access`` stands in for a read-only
    folder, which root (these tests' user in CI containers) could write anyway."""
    parent = tmp_path / "ro"
    (parent / "out").mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(
        output_folder.os, "access", lambda p, mode: Path(p) != parent and real_access(p, mode)
    )
    with pytest.raises(
        output_folder.InputError,
        match=re.escape(f"--output {parent}/out: {parent} is not writable"),
    ):
        output_folder.check_output_dir(parent / "out", False, set())
    with pytest.raises(
        output_folder.InputError, match="is not writable"
    ):  # a new folder inside too
        output_folder.check_output_dir(parent / "new" / "deeper", False, set())
