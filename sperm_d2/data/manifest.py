"""What ``prepare_dataset`` wrote under a data root, so that it replaces only its own files.

``<root>/.prepare_data_manifest.json`` lists every file a run wrote with its sha256. A later run
may overwrite or delete a file only if it is listed *and unchanged*: a file the user made, or
edited since (a reviewed auto-annotation), is never touched; if it stands in the way the run
stops before writing anything. Roots written before manifests existed are recognised by their
``annotations/report.json`` (see :func:`read_manifest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

from sperm_d2.atomic import write_json_atomic
from sperm_d2.data.problems import InputError

MANIFEST = ".prepare_data_manifest.json"
ANY = "*"  # hash of a legacy file: owned whatever its content
_LEGACY_NAMES = re.compile(r"^(train|val|test|fold\d+_(train|val)|report)\.json$")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def overlaps(a: Path, b: Path) -> bool:
    """Whether two folders are the same or one lies inside the other (after resolving links)."""
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or a in b.parents or b in a.parents


def read_manifest(root: Path, name: str = MANIFEST) -> dict[str, str]:
    """``{relative posix path: sha256}`` of the files an earlier run wrote under ``root``.

    Without a manifest, a root whose ``annotations/report.json`` is a prepare_data report is a
    legacy one: its split files, its report and (after ``--from-folders``) its ``labelme/`` files
    count as written by the tool, whatever their content.
    """
    path = root / name
    if path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            files = doc["files"]
            if isinstance(files, dict) and all(isinstance(v, str) for v in files.values()):
                return {str(k): v for k, v in files.items()}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        raise InputError(f"{path}: unreadable manifest; remove it (and {root}'s outputs) first")
    if name != MANIFEST:
        return {}
    report = root / "annotations" / "report.json"
    try:
        settings = json.loads(report.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    owned = {
        f"annotations/{p.name}": ANY
        for p in (root / "annotations").glob("*.json")
        if _LEGACY_NAMES.match(p.name)
    }
    if isinstance(settings, dict) and settings.get("from_folders") and (root / "labelme").is_dir():
        for p in (root / "labelme").rglob("*.json"):
            owned[p.relative_to(root).as_posix()] = ANY
    return owned


def is_owned(root: Path, rel: str, owned: Mapping[str, str]) -> bool:
    """Whether ``root/rel`` is absent, or was written by the tool and is unchanged since."""
    path = root / rel
    if not path.exists():
        return True
    digest = owned.get(rel)
    if digest is None or not path.is_file():
        return False
    return digest == ANY or digest == sha256_file(path)


def check_owned(
    root: Path, rels: Iterable[str], owned: Mapping[str, str], tool: str = "prepare_data.py"
) -> None:
    """Raise :class:`InputError` naming the first of ``rels`` that the tool may not replace."""
    for rel in sorted(rels):
        if not is_owned(root, rel, owned):
            raise InputError(
                f"{root / rel}: exists and was not written by {tool} (or was edited since); "
                "move it away or choose another --output"
            )


def remove_stale(root: Path, stale: Iterable[str], owned: Mapping[str, str]) -> list[str]:
    """Delete the files of an earlier run that this run did not write again (only unchanged
    ones: :func:`is_owned`); empty folders they leave are removed too. Returns what went."""
    removed = []
    for rel in sorted(stale):
        path = root / rel
        if path.is_file() and is_owned(root, rel, owned):
            path.unlink()
            removed.append(rel)
            parent = path.parent
            while parent != root and root in parent.parents:
                with contextlib.suppress(OSError):  # not empty: keep it and stop
                    parent.rmdir()
                    parent = parent.parent
                    continue
                break
    return removed


def write_manifest(
    root: Path, files: Mapping[str, str], name: str = MANIFEST, tool: str = "prepare_data.py"
) -> None:
    """Record ``{relative path: sha256}`` as this run's output (atomically)."""
    write_json_atomic(root / name, {"tool": tool, "files": dict(sorted(files.items()))})


def hash_tree(root: Path, skip: str = "") -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``root`` but ``skip``."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != skip
    }


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest existing ancestor."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
