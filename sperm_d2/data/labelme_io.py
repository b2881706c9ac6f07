"""Read and write labelme annotation files (versions 3.x to 5.x) without importing labelme.

The labelme format is a small JSON document, so the converter reads it directly instead of
depending on the labelme GUI package (an optional extra, ``pip install -e .[annotate]``)::

    {"version": "5.2.1", "flags": {}, "imagePath": "img.png", "imageData": null | "<base64>",
     "imageHeight": 192, "imageWidth": 192,
     "shapes": [{"label": "good", "points": [[x, y], ...], "group_id": null,
                 "shape_type": "polygon", "flags": {}}]}

Version quirks handled here: 3.x files have no ``shape_type`` (polygon is meant), no
``group_id`` and sometimes no image size; ``imagePath`` may use Windows separators; ``imageData``
may embed the image (base64 of the encoded file) instead of, or as well as, a path.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sperm_d2.atomic import write_json_atomic

LABELME_VERSION = "5.2.1"  # the version string written; readers of 4.x/5.x accept it


class LabelmeError(ValueError):
    """A labelme file that cannot be read; the message names the file and the problem."""


@dataclass
class LabelmeShape:
    """One labelme shape, normalised (``shape_type`` always set, ``points`` as float pairs)."""

    label: str
    points: list[list[float]]
    shape_type: str = "polygon"
    group_id: int | None = None
    flags: dict = field(default_factory=dict)


@dataclass
class LabelmeFile:
    """A parsed labelme file. ``image_path`` is resolved against the JSON's folder."""

    json_path: Path
    shapes: list[LabelmeShape]
    image_path: Path | None  # None when the file names no image
    image_data: bytes | None  # decoded ``imageData`` (an encoded image file), if embedded
    height: int | None
    width: int | None
    version: str | None = None
    flags: dict = field(default_factory=dict)


def _shape(raw: Any, i: int, path: Path) -> LabelmeShape:
    if not isinstance(raw, dict):
        raise LabelmeError(f"{path}: shape {i} is not an object")
    label = raw.get("label")
    if not isinstance(label, str):
        raise LabelmeError(f"{path}: shape {i} has no text 'label'")
    pts = raw.get("points", [])
    try:
        points = [[float(p[0]), float(p[1])] for p in pts]
    except (TypeError, ValueError, IndexError, KeyError):
        raise LabelmeError(f"{path}: shape {i} ({label!r}) has malformed 'points'") from None
    group_id = raw.get("group_id")
    if group_id is not None:
        try:
            group_id = int(group_id)
        except (TypeError, ValueError):
            raise LabelmeError(
                f"{path}: shape {i} has a non-integer group_id {group_id!r}"
            ) from None
    shape_type = raw.get("shape_type") or "polygon"  # 3.x has no shape_type
    return LabelmeShape(label, points, str(shape_type), group_id, dict(raw.get("flags") or {}))


def read_labelme_json(json_path: str | os.PathLike) -> LabelmeFile:
    """Parse a labelme JSON file (any 3.x-5.x version).

    Raises:
        LabelmeError: unreadable file, invalid JSON or a malformed field, in one line.
    """
    path = Path(json_path)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except OSError as e:
        raise LabelmeError(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LabelmeError(f"{path}: invalid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes", []), list):
        raise LabelmeError(f"{path}: not a labelme file (no 'shapes' list)")
    shapes = [_shape(s, i, path) for i, s in enumerate(doc.get("shapes", []))]
    image_data = None
    if doc.get("imageData"):
        try:
            image_data = base64.b64decode("".join(str(doc["imageData"]).split()), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise LabelmeError(f"{path}: 'imageData' is not valid base64") from None
    image_path = None
    if doc.get("imagePath"):
        rel = str(doc["imagePath"]).replace("\\", "/")  # files saved on Windows
        image_path = path.parent / rel
    if image_path is None and image_data is None:
        raise LabelmeError(f"{path}: names no image (neither 'imagePath' nor 'imageData')")

    def _int(key: str) -> int | None:
        v = doc.get(key)
        try:
            return int(v) if v is not None else None
        except (TypeError, ValueError):
            raise LabelmeError(f"{path}: '{key}' is not an integer ({v!r})") from None

    flags = doc.get("flags") if isinstance(doc.get("flags"), dict) else {}
    h, w = _int("imageHeight"), _int("imageWidth")
    return LabelmeFile(path, shapes, image_path, image_data, h, w, doc.get("version"), flags)


def write_labelme_json(
    json_path: str | os.PathLike,
    image_path: str | os.PathLike,
    height: int,
    width: int,
    shapes: Sequence[dict | LabelmeShape],
    flags: dict | None = None,
) -> None:
    """Write a labelme 5.x JSON file atomically, ``imagePath`` relative to the JSON's folder.

    ``shapes`` are dicts ``{"label", "points", "group_id", "shape_type", "flags"}`` (missing keys
    get labelme's defaults) or :class:`LabelmeShape`. No ``imageData`` is embedded.
    """
    json_path = Path(json_path)
    rel = os.path.relpath(Path(image_path).absolute(), json_path.parent.absolute())
    out = []
    for s in shapes:
        if isinstance(s, LabelmeShape):
            s = {
                "label": s.label,
                "points": s.points,
                "group_id": s.group_id,
                "shape_type": s.shape_type,
                "flags": s.flags,
            }
        out.append(
            {
                "label": str(s["label"]),
                "points": [[float(x), float(y)] for x, y in s["points"]],
                "group_id": None if s.get("group_id") is None else int(s["group_id"]),
                "description": s.get("description", ""),
                "shape_type": s.get("shape_type", "polygon"),
                "flags": dict(s.get("flags") or {}),
            }
        )
    doc = {
        "version": LABELME_VERSION,
        "flags": dict(flags or {}),
        "shapes": out,
        "imagePath": Path(rel).as_posix(),
        "imageData": None,
        "imageHeight": int(height),
        "imageWidth": int(width),
    }
    write_json_atomic(json_path, doc)
