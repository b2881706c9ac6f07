"""Atomic file output: write to a temporary file in the same folder, then rename over the target.

A reader (or a killed run) never sees a half-written file: it sees the old one or the new one.
"""

import contextlib
import json
import logging
import math
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterator

try:  # POSIX: a temporary file's (or staging folder's) writer holds a lock on it while it lives
    import fcntl
except ImportError:  # pragma: no cover (Windows: stale staging folders are left alone)
    fcntl = None

logger = logging.getLogger(__name__)

#: the most characters of a file's name its temporary files, staging folders and lock take: with
#: their random part and suffix they stay under the 255-byte name limit of common file systems,
#: however long the name they stand for (a 245-character image name gave a too-long temp name)
TEMP_NAME_CHARS = 64


def temp_prefix(name: str) -> str:
    """The hidden prefix of the temporary names that stand for the file or folder ``name``."""
    return f".{name[:TEMP_NAME_CHARS]}."


def _read_umask() -> int:
    """The process umask; reading it means setting it, so it is read once, at import, not from
    the writer threads."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def _temp_next_to(path: Path, suffix: str) -> tuple[int, str]:
    """``(fd, name)`` of a new hidden temporary file in ``path``'s folder (created if needed),
    with the mode a plain ``open()`` would give (mkstemp's own is 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=suffix, dir=path.parent)
    os.chmod(tmp, 0o666 & ~UMASK)
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

    On an exception the temporary file is removed and ``path`` is left as it was. The temporary
    file is locked while it is written, so one a killed process left (SIGKILL: no ``finally``
    ran) can be told apart and removed by :func:`remove_stale_temps`.
    """
    path = Path(path)
    fd, tmp = _temp_next_to(path, ".tmp")
    if fcntl is not None:  # held while it is written: remove_stale_temps leaves it alone
        with contextlib.suppress(OSError):  # a file system without locks: nothing is removed
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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


def real_path(path: str | os.PathLike) -> Path:
    """``path`` absolute with its symlinks followed as far as they go: ``Path.resolve`` raises
    ``RuntimeError`` on a symlink loop (an input a batch must skip, not die on)."""
    return Path(os.path.realpath(path))


def remove_stale_temps(folder: str | os.PathLike, name_glob: str) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` for the files ``name_glob`` in
    ``folder`` (e.g. ``"model_*.pth"``) that a killed process left: those whose lock no process
    holds (a live writer's is locked and stays). Returns the files removed."""
    removed = []
    if fcntl is None:
        return removed
    for tmp in sorted(Path(folder).glob(f".{name_glob}.*.tmp")):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:  # gone meanwhile, or not readable: not ours to judge
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: being written now
            continue
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        logger.info("removed %s, left by a run that was killed while writing it", tmp)
        removed.append(tmp)
    return removed


@contextlib.contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise ``KeyboardInterrupt``: files that
    only make sense together (a dataset's splits, report and manifest) are all written, or the
    interrupt comes before any of them. Outside the main thread (where signal handlers cannot be
    set) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
