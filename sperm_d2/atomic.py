"""Atomic file output: write to a temporary file in the same folder, then rename over the target.

A reader (or a killed run) never sees a half-written file: it sees the old one or the new one.
"""

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


def _read_umask() -> int:
    """The process umask; reading it means setting it, so it is read once, at import, not from
    the writer threads."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _temp_next_to(path: Path, suffix: str) -> tuple[int, str]:
    """``(fd, name)`` of a new hidden temporary file in ``path``'s folder (created if needed),
    with the mode a plain ``open()`` would give (mkstemp's own is 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)
    return fd, tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` for a writer that opens files itself (e.g. OpenCV's
    ``VideoWriter``); renamed onto ``path`` on success, removed on an exception. It keeps
    ``path``'s suffix, since such writers pick the format from it."""
    path = Path(path)
    fd, tmp = _temp_next_to(path, path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = _temp_next_to(path, ".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN: an undefined ratio, COCO's AP of an empty size
    range) replaced by ``None``, numpy scalars and arrays made plain, tuples made lists: what
    strict JSON readers (``jq``, browsers, other languages) accept."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalar or array
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Serialise ``obj`` as strict JSON (:func:`json_safe`: NaN/inf -> ``null``) to ``path``
    atomically."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(json_safe(obj), f, indent=indent, allow_nan=False)
        f.write("\n")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)
