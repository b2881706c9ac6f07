"""The files under an input folder, for every tool that reads one recursively.

``Path.rglob`` and ``os.walk`` pass over a folder the user may not read (the ``PermissionError``
is swallowed) and do not enter symbolic links to folders: a lab's images in either vanished from
a run without a word. :func:`walk_files` follows linked folders (each real folder once, a link
back to a folder above it not at all) and returns the folders it could not walk with the files,
for the caller's own problem or skip report; a folder linked into the input is part of it (the
caller gets the real paths to allow). :func:`walk_class_folders` walks class folders as one tree,
so that no crop is listed under two classes (:mod:`sperm_d2.file_glob` expands globs alike).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Iterable, NamedTuple

__all__ = [
    "DUPLICATE_FOLDER",
    "SYMLINK_LOOP",
    "UNREADABLE_FOLDER",
    "ClassFolderWalk",
    "WalkProblem",
    "unreadable_folder",
    "walk_class_folders",
    "walk_files",
]

UNREADABLE_FOLDER = "unreadable_folder"  # its files are not listed
SYMLINK_LOOP = "symlink_loop"  # a link to a folder above it: its files are listed once already
#: a link in one class folder to a folder listed under another: its files are listed there only
DUPLICATE_FOLDER = "duplicate_folder"


@dataclass(frozen=True)
class WalkProblem:
    """A folder that was not walked: ``path`` (as reached from the root), ``kind``
    (:data:`UNREADABLE_FOLDER` or :data:`SYMLINK_LOOP`) and ``reason``, a line for a person."""

    path: Path
    kind: str
    reason: str


def walk_files(
    root: str | os.PathLike,
    skip: Callable[[str], bool] = lambda name: False,
    exclude: Iterable[str | os.PathLike] = (),
    real_roots: list[Path] | None = None,
    aliases: list[tuple[Path, Path]] | None = None,
) -> tuple[list[Path], list[WalkProblem]]:
    """``(files, problems)``: every entry under ``root`` that is not a folder (regular files,
    links to files, broken links, FIFOs: the caller says why it cannot read one), sorted by path
    parts, as the tools' ``sorted(rglob)`` did; and the folders not walked.

    An entry whose name ``skip`` accepts (folder debris) is left out, with all under it; a folder
    whose real path is in ``exclude`` (the tool's own output) is not entered. Linked folders are
    entered after every real one, so a folder reachable both ways is listed under its real name;
    a link to a folder already walked is not entered again (its files are listed), a link to a
    folder on its own way from the root (or above one) is reported as a loop.

    ``real_roots``, when given, gets the real path of ``root`` and of each linked folder entered:
    the folders the user made part of the input, every listed file that is not itself a link
    lies in one of them (a caller that keeps paths inside their input allows them all).
    ``aliases``, when given, gets ``(path, listed_as)`` for each folder reached by two paths
    and listed under the other one only (a link to a folder of the tree, or a real folder
    below a link entered earlier): its files are reachable under ``path`` too.
    """
    files, problems, links = _walk(Path(root), skip, exclude)
    if real_roots is not None:
        real_roots += _entered(Path(root), links)
    if aliases is not None:
        aliases += [(x.path, x.listed_as) for x in links if x.listed_as is not None]
    return files, problems


class ClassFolderWalk(NamedTuple):
    """What :func:`walk_class_folders` found: ``files`` and ``problems`` (the folders not walked)
    per class folder name, and ``real_roots`` as :func:`walk_files` gives them."""

    files: dict[str, list[Path]]
    problems: dict[str, list[WalkProblem]]
    real_roots: list[Path]


def walk_class_folders(
    root: str | os.PathLike, names: Collection[str], skip: Callable[[str], bool] = lambda n: False
) -> ClassFolderWalk:
    """The files of the folders ``root/<name>`` (``names``), walked as one tree as by
    :func:`walk_files`: a real folder reachable from two class folders is listed once, under
    the one it lies in (or, in two linked ones, the first); the link to it from the other is
    a :data:`DUPLICATE_FOLDER` problem of that one (a crop is in one class, not two).

    A problem of ``root`` itself (it could not be read) is listed under the name ``""``.
    """
    root = Path(root)
    files, problems, links = _walk(root, skip, (), only=set(names))
    out = ClassFolderWalk({n: [] for n in names}, {}, _entered(root, links))

    def top(path: Path) -> str:
        return path.relative_to(root).parts[0] if path != root else ""

    for f in files:
        out.files[top(f)].append(f)
    for link in links:
        if link.listed_as is not None and top(link.listed_as) != top(link.path):
            reason = (
                f"the folder {link.real}, listed already as {link.listed_as} (class folder "
                f"{top(link.listed_as)}): its files are not listed twice"
            )
            problems.append(WalkProblem(link.path, DUPLICATE_FOLDER, reason))
    for w in problems:
        out.problems.setdefault(top(w.path), []).append(w)
    return out


@dataclass(frozen=True)
class _Link:
    """A linked folder met by :func:`_walk`: ``path`` (as reached from the root), its ``real``
    path, and ``listed_as``: ``None`` when it was entered, else the path the real folder was
    listed under already (it was not entered again; also for a real folder below a link)."""

    path: Path
    real: Path
    listed_as: Path | None = None


def _entered(root: Path, links: list[_Link]) -> list[Path]:
    """The real path of ``root`` and of each linked folder entered."""
    return [Path(os.path.realpath(root))] + [x.real for x in links if x.listed_as is None]


def _walk(
    root: Path,
    skip: Callable[[str], bool],
    exclude: Iterable[str | os.PathLike],
    only: Collection[str] | None = None,
) -> tuple[list[Path], list[WalkProblem], list[_Link]]:
    """:func:`walk_files`, with the linked folders met; ``only``: the names of the entries of
    ``root`` to walk (``None``: all)."""
    excluded = {os.path.realpath(e) for e in exclude}
    start = os.path.realpath(root)
    visited = {start: root}  # real path -> the path it is listed under
    # to list: (path from root, real paths of the folders on the way to it, itself last)
    folders: list[tuple[Path, tuple[str, ...]]] = [(root, (start,))]
    queued: deque[tuple[Path, tuple[str, ...]]] = deque()  # linked folders met, after the rest
    files: list[Path] = []
    problems: list[WalkProblem] = []
    links: list[_Link] = []
    while folders or queued:
        if folders:
            folder, chain = folders.pop()
        else:
            folder, above = queued.popleft()
            real = os.path.realpath(folder)
            if real in excluded:
                continue
            # a link to a folder on its own way from the root, or above one: entering it walks
            # that way again, without end
            if any(Path(r).is_relative_to(real) for r in above):
                problems.append(WalkProblem(folder, SYMLINK_LOOP, "symlink loop, not followed"))
                continue
            if real in visited:
                links.append(_Link(folder, Path(real), visited[real]))
                continue
            visited[real] = folder
            links.append(_Link(folder, Path(real)))
            chain = (*above, real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems.append(unreadable_folder(folder, e))
            continue
        below = []
        for entry in entries:
            if skip(entry.name) or (only is not None and folder == root and entry.name not in only):
                continue
            path = folder / entry.name
            if not _is_dir(entry):
                files.append(path)
            elif entry.is_symlink():
                queued.append((path, chain))
            else:
                child = os.path.join(chain[-1], entry.name)
                if child in visited:  # entered by a link met earlier
                    links.append(_Link(path, Path(child), visited[child]))
                elif child not in excluded:
                    visited[child] = path
                    below.append((path, (*chain, child)))
        folders.extend(reversed(below))  # walked in name order: links met in name order
    return sorted(files), problems, links


def unreadable_folder(folder: Path, e: OSError) -> WalkProblem:
    """The problem of a folder ``os.scandir`` refused with ``e``."""
    return WalkProblem(folder, UNREADABLE_FOLDER, f"cannot read folder: {e.strerror or e}")


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether an entry is a folder, through links; an entry that cannot be looked at (a link
    loop among files) is not one, and the caller says why it cannot be read."""
    try:
        return entry.is_dir()
    except OSError:
        return False
