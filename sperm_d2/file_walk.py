"""The files under an input folder, for every tool that reads one recursively.

``Path.rglob`` and ``os.walk`` pass over a folder the user may not read (the ``PermissionError``
is swallowed) and do not enter symbolic links to folders: a lab's images in either vanished from
a run without a word. :func:`walk_files` follows linked folders (each real folder once, a link
back to a folder above it not at all) and returns the folders it could not walk with the files,
for the caller's own problem or skip report.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["SYMLINK_LOOP", "UNREADABLE_FOLDER", "WalkProblem", "walk_files"]

UNREADABLE_FOLDER = "unreadable_folder"  # its files are not listed
SYMLINK_LOOP = "symlink_loop"  # a link to a folder above it: its files are listed once already


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
) -> tuple[list[Path], list[WalkProblem]]:
    """``(files, problems)``: every entry under ``root`` that is not a folder (regular files,
    links to files, broken links, FIFOs: the caller says why it cannot read one), sorted by path
    parts, as the tools' ``sorted(rglob)`` did; and the folders not walked.

    An entry whose name ``skip`` accepts (folder debris) is left out, with all under it; a folder
    whose real path is in ``exclude`` (the tool's own output) is not entered. Linked folders are
    entered after every real one, so a folder reachable both ways is listed under its real name;
    a link to a folder already walked is not entered again (its files are listed), a link to a
    folder on its own way from the root (or above one) is reported as a loop.
    """
    root = Path(root)
    excluded = {os.path.realpath(e) for e in exclude}
    start = os.path.realpath(root)
    visited = {start}
    # to list: (path from root, real paths of the folders on the way to it, itself last)
    folders: list[tuple[Path, tuple[str, ...]]] = [(root, (start,))]
    links: deque[tuple[Path, tuple[str, ...]]] = deque()  # linked folders met, after the rest
    files: list[Path] = []
    problems: list[WalkProblem] = []
    while folders or links:
        if folders:
            folder, chain = folders.pop()
        else:
            folder, above = links.popleft()
            real = os.path.realpath(folder)
            if real in excluded:
                continue
            # a link to a folder on its own way from the root, or above one: entering it walks
            # that way again, without end
            if any(Path(r).is_relative_to(real) for r in above):
                problems.append(WalkProblem(folder, SYMLINK_LOOP, "symlink loop, not followed"))
                continue
            if real in visited:
                continue
            visited.add(real)
            chain = (*above, real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            reason = f"cannot read folder: {e.strerror or e}"
            problems.append(WalkProblem(folder, UNREADABLE_FOLDER, reason))
            continue
        below = []
        for entry in entries:
            if skip(entry.name):
                continue
            path = folder / entry.name
            if not _is_dir(entry):
                files.append(path)
            elif entry.is_symlink():
                links.append((path, chain))
            else:
                child = os.path.join(chain[-1], entry.name)
                if child not in excluded and child not in visited:
                    visited.add(child)
                    below.append((path, (*chain, child)))
        folders.extend(reversed(below))  # walked in name order: links met in name order
    return sorted(files), problems


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether an entry is a folder, through links; an entry that cannot be looked at (a link
    loop among files) is not one, and the caller says why it cannot be read."""
    try:
        return entry.is_dir()
    except OSError:
        return False
