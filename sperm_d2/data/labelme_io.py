"""Read and write labelme annotation files (versions 3.x to 5.x) without importing labelme.

The labelme format is a small JSON document, so the converter reads it directly instead of
depending on the labelme GUI package (an optional extra, ``pip install -e .[annotate]``)::

    {"version": "5.2.1", "flags": {}, "imagePath": "img.png", "imageData": null | "<base64>",
     "imageHeight": 192, "imageWidth": 192,
     "shapes": [{"label": "good", "points": [[x, y], ...], "group_id": null,
                 "shape_type": "polygon", "flags": {}}]}

Version quirks handled here: 3.x files have no ``shape_type`` (polygon is meant), no
``group_id`` and sometimes no image size; ``imagePath`` may use Windows separators; ``imageData``
may embed the image (base64 of the encoded file) instead of, or as well as, a path; labelme
>= 5.3 gives every shape a ``mask`` (null, or a ``mask`` shape's base64 PNG: kept as text).

Files are parsed with orjson (several times faster than the standard library on files with an
embedded image); a file orjson refuses or reads differently (``NaN``, lone surrogates, integers
beyond 64 bits, a malformed field) is parsed again with the standard library, whose result and
messages are the reference, so both give the same :class:`LabelmeFile` or the same error.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Sequence

import orjson

from sperm_d2.atomic import write_json_atomic
from sperm_d2.errors import SpermInputError
from sperm_d2.image_io import not_a_regular_file

LABELME_VERSION = "5.2.1"  # the version string written; readers of 4.x/5.x accept it


class LabelmeError(SpermInputError, ValueError):
    """A labelme file that cannot be read; the message names the file and the problem."""


@dataclass
class LabelmeShape:
    """One labelme shape, normalised (``shape_type`` always set, ``points`` as float pairs)."""

    label: str
    points: list[list[float]]
    shape_type: str = "polygon"
    group_id: int | None = None
    flags: dict = field(default_factory=dict)
    mask: str | None = None  # a ``mask`` shape's base64 PNG (labelme >= 5.3), as in the file


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
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (kind, message): kept, odd


def _number(v: Any) -> float:
    """A finite float from a JSON number; strings, booleans, NaN and infinities are refused
    (``float("10,10"[0])`` would silently turn a string point into a wrong coordinate)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{v!r} is not a number")
    f = float(v)  # OverflowError for an int beyond float range
    if not math.isfinite(f):
        raise ValueError(f"{v!r} is not finite")
    return f


def _points(pts: Any) -> list[list[float]]:
    fast = _points_fast(pts)
    return fast if fast is not None else _points_each(pts)


def _points_each(pts: Any) -> list[list[float]]:
    """``points`` as [x, y] float pairs, checked point by point (the reference)."""
    if not isinstance(pts, list):
        raise ValueError(f"'points' is {type(pts).__name__}, not a list of [x, y]")
    out = []
    for j, p in enumerate(pts):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise ValueError(f"point {j} is {_short(p)}, not [x, y]")
        try:
            out.append([_number(p[0]), _number(p[1])])
        except (ValueError, OverflowError) as e:
            raise ValueError(f"point {j} {_short(p)}: {e}") from None
    return out


_FLOAT, _NUMBER = {float}, {float, int}


def _points_fast(pts: Any) -> list[list[float]] | None:
    """What :func:`_points` returns for the common case (a list of [x, y] lists of finite floats
    or ints), checked in C-level passes instead of per point; ``None`` for anything else (the
    per-point loop then gives the same result or the same message)."""
    if type(pts) is not list or not pts:
        return [] if type(pts) is list else None
    if set(map(type, pts)) != {list} or set(map(len, pts)) != {2}:
        return None
    types = set(map(type, chain.from_iterable(pts)))
    if not types <= _NUMBER:  # bool, str, None... (bool is not int here: type(True) is bool)
        return None
    try:
        if not math.isfinite(sum(chain.from_iterable(pts))):  # NaN or inf (or a sum > 1e308)
            return None
        return pts if types == _FLOAT else [[float(x), float(y)] for x, y in pts]
    except OverflowError:  # an int beyond float range
        return None


def _integer(v: Any) -> int:
    """An int from a JSON integer (or an integral float such as ``3.0``); nothing else."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError
    if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
        raise ValueError
    return int(v)


def _short(v: Any, limit: int = 40) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Reparse(Exception):
    """orjson read the file differently from the standard library: parse it with the latter."""


_BIG = float(2**63)  # orjson reads an integer beyond 64 bits as a float; json keeps the int


def _check_exact(v: Any) -> None:
    """Refuse (in orjson mode) a value that may hold an integer beyond 64 bits, which orjson reads
    as a float: the file is then parsed again with the standard library, which keeps the int."""
    stack = [v]
    while stack:
        x = stack.pop()
        if type(x) is float and abs(x) >= _BIG:
            raise _Reparse
        if type(x) is dict:
            stack.extend(x.values())
        elif type(x) is list:
            stack.extend(x)


def _shape(raw: Any, i: int, path: Path, warnings: list, exact: bool = True) -> LabelmeShape:
    if not isinstance(raw, dict):
        raise LabelmeError(f"{path}: shape {i} is not an object")
    label = raw.get("label")
    if not isinstance(label, str):
        raise LabelmeError(f"{path}: shape {i} has no text 'label'")
    try:
        points = _points(raw.get("points", []))
    except ValueError as e:
        raise LabelmeError(f"{path}: shape {i} ({label!r}) has malformed 'points': {e}") from None
    group_id = raw.get("group_id")
    if group_id is not None:
        if not exact and type(group_id) is float and abs(group_id) >= _BIG:
            raise _Reparse
        try:
            group_id = _integer(group_id)
        except ValueError:
            raise LabelmeError(
                f"{path}: shape {i} has a non-integer group_id {_short(group_id)}"
            ) from None
    shape_type = raw.get("shape_type") or "polygon"  # 3.x has no shape_type
    if not isinstance(shape_type, str):
        raise LabelmeError(f"{path}: shape {i} has a non-text shape_type {_short(shape_type)}")
    flags = raw.get("flags")
    if not exact and flags:
        _check_exact(flags)
    if flags is not None and not isinstance(flags, dict):
        warnings.append(
            ("bad_flags", f"shape {i} 'flags' is {_short(flags)}, not an object: ignored")
        )
        flags = None
    mask = raw.get("mask")  # labelme >= 5.3 writes "mask": null on every other shape
    mask = mask if isinstance(mask, str) else None
    return LabelmeShape(label, points, shape_type, group_id, dict(flags or {}), mask)


class _DuplicateKey(ValueError):
    """An object names a key the converter reads twice, with different values."""


#: keys the converter reads (the document's and its shapes'): given twice with different values
#: in one object, which one is meant? JSON parsers keep the last silently, so a hand-merged
#: file could lose its first ``shapes`` unseen.
_READ_KEYS = ("shapes", "imagePath", "imageData", "imageHeight", "imageWidth", "version")
_READ_KEYS += ("label", "points", "shape_type", "group_id")
#: one pass finds them all (ten ``bytes.count`` passes cost 0.2 ms on a 40-polygon file's text)
_QUOTED_KEYS = re.compile(b'"(' + b"|".join(k.encode() for k in _READ_KEYS) + b')"')


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` of the reference parser: refuse a key of :data:`_READ_KEYS` given
    twice with different values."""
    out: dict = {}
    for key, value in pairs:
        if key in out and key in _READ_KEYS and out[key] != value:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _may_repeat_keys(raw: bytes, doc: Any) -> bool:
    """Whether a key of :data:`_READ_KEYS` occurs in ``raw`` more often than in the parsed
    document and its shapes (a duplicate, or the key's name used elsewhere): then the reference
    parser decides. The embedded image's base64, which holds no quote, is not searched, so the
    counts cost microseconds rather than a pass over megabytes."""
    if not isinstance(doc, dict):
        return False
    spans = [(0, len(raw))]
    data = doc.get("imageData")
    if isinstance(data, str) and len(data) > 4096:
        key = raw.find(b'"imageData"')
        start = raw.find(b'"', key + 11) + 1 if key >= 0 else 0
        if start and raw.startswith(data[:32].encode(), start):
            spans = [(0, start), (raw.find(b'"', start), len(raw))]
    shapes = doc.get("shapes")
    objects = (
        [doc] + [s for s in shapes if isinstance(s, dict)] if isinstance(shapes, list) else [doc]
    )
    found = Counter(key for a, b in spans for key in _QUOTED_KEYS.findall(raw, a, b))
    parsed = Counter(key.encode() for o in objects for key in o if key in _READ_KEYS)
    return any(n > parsed[key] for key, n in found.items())


def _decode_stdlib(path: Path, raw: bytes) -> Any:
    """The reference parser (standard library), with the one-line errors."""
    try:
        # utf-8-sig: files saved by Windows editors may start with a byte-order mark
        return json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LabelmeError(f"{path}: invalid JSON ({str(e).splitlines()[0]})") from None
    except _DuplicateKey as e:
        raise LabelmeError(
            f"{path}: key {e.args[0]!r} given twice with different values (which one is meant?)"
        ) from None
    except RecursionError:
        raise LabelmeError(f"{path}: invalid JSON (nested too deeply)") from None


def _b64decode(text: str) -> bytes:
    """``imageData`` -> bytes; whitespace (line breaks of some writers) is ignored."""
    try:  # most files: no whitespace, decoded without the copy that removing it makes
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        return base64.b64decode("".join(text.split()), validate=True)


def read_labelme_json(json_path: str | os.PathLike) -> LabelmeFile:
    """Parse a labelme file (any 3.x-5.x version), strictly: every coordinate a finite number.

    Problems that leave the annotation usable (a file without ``shapes``, malformed ``flags``)
    are listed in :attr:`LabelmeFile.warnings`.

    Raises:
        LabelmeError: unreadable file (or a FIFO, device...), invalid JSON, a key given twice
            with different values or a malformed field, in one line.
    """
    path = Path(json_path)
    special = not_a_regular_file(path)  # a FIFO named *.json would block the batch for ever
    if special:
        raise LabelmeError(f"{path}: {special}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise LabelmeError(f"{path}: cannot read ({e.strerror or e})") from None
    try:  # fast path; anything orjson refuses or may read differently goes to the reference
        doc = orjson.loads(raw[3:] if raw[:3] == b"\xef\xbb\xbf" else raw)
    except orjson.JSONDecodeError:
        pass
    else:
        try:
            if not _may_repeat_keys(raw, doc):
                return _parse(doc, path, exact=False)
        except (LabelmeError, _Reparse):
            pass  # a malformed file: its message comes from the reference parse below
    return _parse(_decode_stdlib(path, raw), path, exact=True)


def _parse(doc: Any, path: Path, exact: bool) -> LabelmeFile:
    """A decoded labelme document -> :class:`LabelmeFile`; ``exact`` False for orjson's result
    (see :func:`_check_exact`)."""
    warnings: list[tuple[str, str]] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes", []), (list, type(None))):
        raise LabelmeError(f"{path}: not a labelme file (no 'shapes' list)")
    if doc.get("shapes") is None:
        warnings.append(("no_shapes", "no 'shapes' list: taken as an image without heads"))
    shapes = [_shape(s, i, path, warnings, exact) for i, s in enumerate(doc.get("shapes") or [])]
    image_data = None
    if doc.get("imageData"):
        if not isinstance(doc["imageData"], str):
            raise LabelmeError(f"{path}: 'imageData' is not valid base64")
        try:
            image_data = _b64decode(doc["imageData"])
        except (binascii.Error, TypeError, ValueError):
            raise LabelmeError(f"{path}: 'imageData' is not valid base64") from None
    image_path = None
    if doc.get("imagePath"):
        if not isinstance(doc["imagePath"], str) or "\0" in doc["imagePath"]:
            raise LabelmeError(f"{path}: 'imagePath' {_short(doc['imagePath'])} is not a path")
        rel = doc["imagePath"].replace("\\", "/")  # files saved on Windows
        image_path = path.parent / rel
    if image_path is None and image_data is None:
        raise LabelmeError(f"{path}: names no image (neither 'imagePath' nor 'imageData')")

    def _size(key: str) -> int | None:
        v = doc.get(key)
        if v is None:
            return None
        if not exact:
            _check_exact(v)
        try:
            n = _integer(v)
        except ValueError:
            raise LabelmeError(f"{path}: '{key}' is not an integer ({_short(v)})") from None
        if n <= 0:
            raise LabelmeError(f"{path}: '{key}' is {n}, not a positive size")
        return n

    flags = doc.get("flags")
    if not exact and flags:
        _check_exact(flags)
    if flags is not None and not isinstance(flags, dict):
        warnings.append(("bad_flags", f"'flags' is {_short(flags)}, not an object: ignored"))
    flags = flags if isinstance(flags, dict) else {}
    h, w = _size("imageHeight"), _size("imageWidth")
    version = doc.get("version") if isinstance(doc.get("version"), str) else None
    return LabelmeFile(path, shapes, image_path, image_data, h, w, version, flags, warnings)


def write_labelme_json(
    json_path: str | os.PathLike,
    image_path: str | os.PathLike,
    height: int,
    width: int,
    shapes: Sequence[dict | LabelmeShape],
    flags: dict | None = None,
) -> None:
    """Write a labelme 5.x JSON file atomically, ``imagePath`` relative to the JSON's folder.

    ``shapes`` are dicts ``{"label", "points", "group_id", "shape_type", "flags"}`` and, for a
    ``mask`` shape, ``"mask"`` (missing keys get labelme's defaults) or :class:`LabelmeShape`.
    No ``imageData`` is embedded.
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
                "mask": s.mask,
            }
        shape = {
            "label": str(s["label"]),
            "points": [[float(x), float(y)] for x, y in s["points"]],
            "group_id": None if s.get("group_id") is None else int(s["group_id"]),
            "description": s.get("description", ""),
            "shape_type": s.get("shape_type", "polygon"),
            "flags": dict(s.get("flags") or {}),
        }
        if s.get("mask") is not None:  # a labelme >= 5.3 mask shape: its PNG, as read
            shape["mask"] = str(s["mask"])
        out.append(shape)
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
