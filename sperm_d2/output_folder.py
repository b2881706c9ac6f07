"""The output folders of the tools: checked before any work (:func:`check_output_dir`), built
in a hidden staging folder beside them and swapped in whole (:func:`staged_dir`), locked while a
run writes them (:func:`lock_output`), and a killed run's staging folders removed by the next
(:func:`remove_stale_staging`).
"""

import contextlib
import glob
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from sperm_d2.atomic import UMASK, fcntl, real_path, temp_prefix
from sperm_d2.errors import InputError

logger = logging.getLogger(__name__)

#: the lock file a live staging folder holds (see :func:`staged_dir`)
STAGING_LOCK = ".staging.lock"


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
    return path.parent / f"{temp_prefix(path.name)}lock"


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
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o666 & ~UMASK)
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
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path.name), suffix=".partial", dir=path.parent))
    os.chmod(tmp, 0o777 & ~UMASK)
    lock = None
    try:
        lock = _hold_lock(tmp)
        yield tmp
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp / STAGING_LOCK)  # not an output; the lock itself lasts until close
        old = None
        if path.exists():
            old = Path(
                tempfile.mkdtemp(prefix=temp_prefix(path.name), suffix=".old", dir=path.parent)
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
    fd = os.open(folder / STAGING_LOCK, os.O_CREAT | os.O_RDWR, 0o666 & ~UMASK)
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
    pattern = f"{glob.escape(temp_prefix(path.name))}*.partial"
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
