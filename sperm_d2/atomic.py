"""Atomic file output: write to a temporary file in the same folder, then rename over the target.

A reader (or a killed run) never sees a half-written file: it sees the old one or the new one.
"""

import contextlib
import glob
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from sperm_d2.errors import InputError

try:  # POSIX: a staging folder's owner holds a lock on it while it lives
    import fcntl
except ImportError:  # pragma: no cover (Windows: stale staging folders are left alone)
    fcntl = None

logger = logging.getLogger(__name__)

#: the lock file a live staging folder holds (see :func:`staged_dir`)
STAGING_LOCK = ".staging.lock"
#: the most characters of a file's name its temporary files, staging folders and lock take: with
#: their random part and suffix they stay under the 255-byte name limit of common file systems,
#: however long the name they stand for (a 245-character image name gave a too-long temp name)
TEMP_NAME_CHARS = 64


def _temp_prefix(name: str) -> str:
    """The hidden prefix of the temporary names that stand for the file or folder ``name``."""
    return f".{name[:TEMP_NAME_CHARS]}."


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
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=suffix, dir=path.parent)
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


def paths_overlap(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` (resolved, symlinks followed) are the same path or one lies
    inside the other."""
    ra, rb = real_path(a), real_path(b)
    return ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra)


def check_output_dir(
    path: str | os.PathLike,
    overwrite: bool,
    own_names: set[str],
    flag: str = "--output",
    keep: Sequence[tuple[str, str | os.PathLike]] = (),
) -> None:
    """Refuse, in one line naming ``flag``, an output folder a run cannot (or may not) replace.

    ``keep`` names what the run reads, as ``(argument, path)``: the output may not be one of
    them, lie inside one (it would become an input) or contain one (replacing the output would
    delete it). A new or empty folder is fine. A folder with files needs ``overwrite``, and even
    then only a folder whose top-level entries are all ``own_names`` (an earlier run's outputs)
    is replaced: a folder holding anything else was not written by the tool, and replacing it
    would delete what it did not write. The folder (if it exists) and the folder its outputs
    are staged in (its parent, or the nearest existing ancestor) must be writable.

    Raises:
        ValueError: the reason, starting with ``flag`` and the path.
    """
    path = Path(path)
    for arg, other in keep:
        if not paths_overlap(path, other):
            continue
        rp, ro = real_path(path), real_path(other)
        how = "is" if rp == ro else "lies inside" if rp.is_relative_to(ro) else "contains"
        raise InputError(f"{flag} {path}: {how} {arg} {other}; write the output elsewhere")
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path}: exists and is not a folder")
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if entries and not overwrite:
            raise InputError(
                f"{flag} {path}: folder exists and is not empty; give --overwrite to replace "
                "an earlier run's output wholly, or name a new folder"
            )
        foreign = [n for n in entries if n not in own_names]
        if foreign:
            raise InputError(
                f"{flag} {path}: holds {foreign[0]!r} (and {len(foreign) - 1} more), which this "
                "tool does not write; it replaces only an earlier run's output folder"
            )
    # the outputs are staged beside the folder (staged_dir) and an existing folder is moved
    # aside: its parent must be writable too, not only the folder itself
    anchors = [path] if path.is_dir() else []
    anchor = output_target(path).parent
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir():
        raise InputError(f"{flag} {path}: {anchor} is a file, not a folder")
    for folder in anchors + [anchor]:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"{flag} {path}: {folder} is not writable")
    if path.absolute().parent.is_dir():  # a run writing it now: refused before any work
        try:
            unlock_output(path, lock_output(path))
        except OutputBusyError as e:
            raise OutputBusyError(f"{flag} {e}") from None


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder's contents in a new hidden folder beside ``path`` (beside the folder it
    links to, for a symlink); on success it replaces ``path`` as a whole (an earlier folder
    there is moved aside, then deleted), so readers see the old outputs or the new ones, never a
    mix. On an exception the staging folder and any
    parent folders made for it are removed and ``path`` is left as it was. The staging folder is
    locked while it lives, so that the next run removes it if this one is killed outright
    (:func:`remove_stale_staging`), and so is ``path`` itself (:func:`lock_output`): a second
    run into the same folder is refused instead of replacing the first one's output.

    Raises:
        OutputBusyError: another run is building ``path`` now (nothing was made).
    """
    path = output_target(path)
    made = []  # parents created here, removed again if the run fails
    parent = path.parent
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        output_lock = lock_output(path)
    except OutputBusyError:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    try:
        with _staging(path) as tmp:
            yield tmp
    except BaseException:
        unlock_output(path, output_lock)  # its file first: the parents made here go too
        output_lock = None
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        unlock_output(path, output_lock)


class OutputBusyError(InputError):
    """Another run is writing the output folder now."""


def output_target(path: str | os.PathLike) -> Path:
    """The folder an output path names, absolute: a symlink is followed (its target folder is
    replaced, the link kept; replacing the link by a folder left the target stale)."""
    path = Path(path).absolute()
    return real_path(path) if path.is_symlink() else path


def _output_lock_path(path: Path) -> Path:
    return path.parent / f"{_temp_prefix(path.name)}lock"


def lock_output(path: str | os.PathLike) -> int | None:
    """Hold an exclusive lock on the output folder ``path`` (a hidden lock file beside it) until
    :func:`unlock_output`; released by the system however the process ends.

    Raises:
        OutputBusyError: another live run holds it (one line naming the folder).
    """
    if fcntl is None:
        return None
    path = output_target(path)
    lock_path = _output_lock_path(path)
    for _ in range(8):  # the holder may remove the lock file between our open and our lock
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputBusyError(
                f"{path}: another run is writing this output folder now; wait for it to end or "
                "name another folder"
            ) from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise OutputBusyError(f"{path}: cannot lock this output folder (its lock keeps changing)")


def unlock_output(path: str | os.PathLike, fd: int | None) -> None:
    """Release :func:`lock_output`'s lock and remove its file."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(_output_lock_path(output_target(path)))
    os.close(fd)


@contextlib.contextmanager
def _staging(path: Path) -> Iterator[Path]:
    """:func:`staged_dir`'s body, with the output folder locked."""
    remove_stale_staging(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".partial", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    lock = None
    try:
        lock = _hold_lock(tmp)
        yield tmp
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp / STAGING_LOCK)  # not an output; the lock itself lasts until close
        old = None
        if path.exists():
            old = Path(
                tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".old", dir=path.parent)
            )
            os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:  # put the earlier folder back
                os.replace(old / path.name, path)
                old.rmdir()
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)


def _hold_lock(folder: Path) -> int | None:
    """An exclusive lock on a new ``STAGING_LOCK`` file in ``folder``, held by the returned file
    descriptor until it is closed (or the process ends, however it ends)."""
    if fcntl is None:
        return None
    fd = os.open(folder / STAGING_LOCK, os.O_CREAT | os.O_RDWR, 0o666 & ~_UMASK)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_stale_staging(path: str | os.PathLike) -> list[Path]:
    """Remove the staging folders of ``path`` that a killed run left (SIGKILL, a power cut:
    no ``finally`` ran): those whose lock no process holds. A live run's folder is locked and
    stays, as does one without a lock file (made by another tool, or caught between its steps).
    Returns the folders removed."""
    path = Path(path).absolute()
    removed = []
    if fcntl is None:
        return removed
    pattern = f"{glob.escape(_temp_prefix(path.name))}*.partial"
    for folder in sorted(path.parent.glob(pattern)):
        try:
            fd = os.open(folder / STAGING_LOCK, os.O_RDWR)
        except OSError:  # no lock file (or not a folder): not ours to judge
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a run is building it now
            continue
        finally:
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("removed %s, left by a run that was killed", folder)
        removed.append(folder)
    return removed


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
