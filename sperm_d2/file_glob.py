"""The files a glob pattern names (``infer.py``'s inputs), found as input folders are walked.

``glob.glob`` passes over a folder it may not read without a word, and a recursive pattern
(a ``**`` part) follows a link loop until the path is too long, listing each file again at
every turn (with two loops, without end in practice). :func:`glob_files` reports the folders it
could not search, and walks the part of a recursive pattern from ``**`` on with
:func:`sperm_d2.file_walk.walk_files` (each real folder once, loops reported), still matching a
file by the name of a linked folder it lies in.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections import deque
from pathlib import Path
from typing import Callable, Iterator, Sequence

from sperm_d2.file_walk import WalkProblem, unreadable_folder, walk_files

__all__ = ["glob_files", "glob_root"]

#: the most other paths one file is tried under (each link to a folder of the tree adds one)
MAX_ALIASES = 10_000


def glob_root(spec: str) -> Path:
    """The folder a glob's pattern starts in (its parts before the first wildcard)."""
    parts = []
    for part in Path(spec).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def glob_files(
    spec: str, skip: Callable[[str], bool] = lambda name: False
) -> tuple[list[Path], list[WalkProblem]]:
    """``(files, problems)`` for a glob pattern, as :func:`walk_files` for a folder: the
    entries it matches that are not folders, sorted, and the folders it could not search.

    The parts before a ``**`` (all of them, without one) are ``glob.glob``'s, and the folders it
    lists on the way are checked, so that one it could not read is reported instead of passed
    by. From ``**`` on, each folder matched so far is walked and its files kept when their path
    below it matches the rest of the pattern (``**`` standing for any number of folders, as in
    ``glob``), under the first of their paths that does. Entries whose name ``skip`` accepts
    are left out, with all under them (pattern parts included; ``..`` is not a name).
    """
    root = glob_root(spec)
    rest = Path(spec).parts[len(root.parts) :]
    k = rest.index("**") if "**" in rest else len(rest)
    problems = _unsearchable(root, rest[:k], skip)
    if k == len(rest):
        found = [Path(m) for m in glob.glob(spec)]
        keep = [f for f in found if not _is_dir(f) and not _skips(f.parts[len(root.parts) :], skip)]
        return sorted(keep), problems
    files: dict[tuple[str, str], Path] = {}  # (real folder, name) -> the path it is listed as
    for top in _folders(root, rest[:k], skip):
        pairs: list[tuple[Path, Path]] = []
        found, unwalked = walk_files(top, skip, aliases=pairs)
        aliases: dict[Path, list[Path]] = {}  # folder listed -> the other paths that reach it
        for path, listed_as in pairs:
            aliases.setdefault(listed_as, []).append(path)
        problems += unwalked
        for f in found:
            # two folders before ** may reach one folder (a link between them): listed once
            key = (os.path.realpath(f.parent), f.name)
            if key in files:
                continue
            hit = next(
                (p for p in _paths(f, aliases) if _matches(rest[k:], p.relative_to(top).parts)),
                None,
            )
            if hit is not None:
                files[key] = hit
    return sorted(files.values()), problems


def _unsearchable(
    root: Path, parts: Sequence[str], skip: Callable[[str], bool]
) -> list[WalkProblem]:
    """The folders ``glob`` lists to match ``root/parts`` (those before a wildcard part) that
    cannot be read."""
    problems = []
    for i, part in enumerate(parts):
        if not glob.has_magic(part):
            continue
        for folder in map(Path, glob.glob(str(root.joinpath(*parts[:i])))):
            if not _is_dir(folder) or _skips(folder.parts[len(root.parts) :], skip):
                continue
            try:
                os.scandir(folder).close()
            except OSError as e:
                problems.append(unreadable_folder(folder, e))
    return problems


def _folders(root: Path, parts: Sequence[str], skip: Callable[[str], bool]) -> list[Path]:
    """The folders ``root/parts`` matches (``root`` itself without parts)."""
    found = map(Path, sorted(glob.glob(str(root.joinpath(*parts))))) if parts else [root]
    return [f for f in found if _is_dir(f) and not _skips(f.parts[len(root.parts) :], skip)]


def _skips(parts: Sequence[str], skip: Callable[[str], bool]) -> bool:
    return any(skip(p) for p in parts if p not in (".", ".."))


def _paths(path: Path, aliases: dict[Path, list[Path]]) -> Iterator[Path]:
    """``path``, then (lazily) the other paths it is reached by through folders listed under
    another name (``aliases``: folder listed -> its other paths), aliases of aliases too."""
    yield path
    if not aliases:
        return
    queue, seen = deque([path]), {path}
    while queue and len(seen) <= MAX_ALIASES:
        p = queue.popleft()
        for i in range(1, len(p.parts)):  # each folder above p that was listed for others
            for other in aliases.get(Path(*p.parts[:i]), ()):
                q = other.joinpath(*p.parts[i:])
                if q not in seen:
                    seen.add(q)
                    queue.append(q)
                    yield q


def _matches(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    """Whether path ``parts`` match pattern parts, ``**`` matching zero or more of them."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _matches(rest, parts[1:])


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder (through links); one that cannot be looked at is not."""
    try:
        return path.is_dir()
    except OSError:
        return False
