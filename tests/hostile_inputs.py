"""Helpers of the hostile-input corpus tests: run a tool's ``main`` in-process, hash inputs,
craft malformed files (decompression-bomb and truncated PNGs, labelme documents, FIFOs,
symlink loops, deep greyscale images)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import io
import json
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Iterator

from .conftest import REPO


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None  # escaped main(): a traceback for a user

    def lines(self, prog: str) -> list[str]:
        """The tool's own stderr lines (argparse's usage lines and log records excluded)."""
        return [line for line in self.stderr.splitlines() if line.startswith(f"{prog}: ")]


def run_main(main, argv: list[str]) -> Outcome:
    """Call ``main(argv)`` capturing stdout/stderr; an exception is recorded, not raised."""
    out, err = io.StringIO(), io.StringIO()
    exc = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 1
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - recorded, not raised
            exc, code = e, -1  # (a KeyboardInterrupt escaping would stop pytest itself)
    return Outcome(code, out.getvalue(), err.getvalue(), exc)


def tree_hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under (or at) ``roots``."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def edit_json(path: Path, fn, allow_nan: bool = True) -> None:
    """Rewrite a labelme file through ``fn(doc)`` (which may return a replacement)."""
    doc = json.loads(path.read_text())
    new = fn(doc)
    path.write_text(json.dumps(doc if new is None else new, allow_nan=allow_nan))


@contextlib.contextmanager
def fifo_watchdog(fifos: list[Path], after: float = 15.0) -> Iterator[threading.Event]:
    """Make ``fifos`` (created here) and, should a reader still block on one after ``after``
    seconds, open its write end and close it (the reader gets end-of-file) so the test ends
    instead of hanging. The event yielded is set when that had to happen: a reader that opened
    a FIFO, which a tool must refuse on its type."""
    for f in fifos:
        os.mkfifo(f)
    fired, done = threading.Event(), threading.Event()

    def unblock() -> None:
        if done.wait(after):
            return
        while not done.is_set():
            for f in fifos:
                try:  # non-blocking: fails with ENXIO while nobody reads the FIFO
                    os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
                    fired.set()
                except OSError as e:
                    if e.errno not in (errno.ENXIO, errno.ENOENT):
                        raise
            time.sleep(0.2)

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        done.set()
        thread.join()


def symlink_loop(path: Path) -> None:
    """``path`` as a symlink to itself (stat fails with ELOOP; ``Path.resolve`` raises)."""
    os.symlink(path.name, path)


def gray16_png(path: Path, size: int = 64) -> None:
    """A 16-bit greyscale PNG (PIL mode I;16) of a mid-grey ramp: most values above 255."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(20000, 60000, size * size).reshape(size, size).astype(np.uint16)
    Image.fromarray(ramp).save(path)
