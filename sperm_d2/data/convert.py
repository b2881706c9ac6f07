"""Convert ONE labelme file into a COCO image entry + instances, validating as it goes.

Pure Python + numpy/pycocotools/PIL (no torch, no detectron2) so it runs in worker processes.
Errors skip the file; warnings keep it with the offending shape fixed (clipped) or dropped.
Every image is decoded in full once (never re-encoded), so a truncated or corrupt file is an
error here, not a crash in training; an image over :data:`MAX_IMAGE_PIXELS` is refused before
it is decoded. Nothing is written: an embedded ``imageData`` image is returned with its target
path and written by the caller once the whole dataset is known to be usable.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sperm_d2.data.geometry import clip_polygon, mask_stats, shape_to_polygon
from sperm_d2.data.labelme_io import LabelmeError, LabelmeFile, read_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.problems import ERROR, WARNING, Problem
from sperm_d2.image_io import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

AUGMENTED_FROM = "augmented_from"  # labelme flag set by sperm_d2.data.balance on its copies
EMBEDDED_DIR = "images"  # embedded imageData is written out under <output_root>/images/
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class ConvertContext:
    """What every file's conversion needs; picklable for worker processes."""

    input_root: Path  # JSON paths are reported relative to this
    output_root: Path  # COCO file_name is relative to this
    label_map: LabelMap
    allowed_roots: tuple = ()  # images must resolve inside one of these (default: input_root)


@dataclass
class FileResult:
    """Outcome for one labelme file; ``ok`` False means it was skipped (see ``problems``)."""

    json_rel: str
    ok: bool = False
    file_name: str = ""
    width: int = 0
    height: int = 0
    instances: list = field(default_factory=list)  # dicts: class, category_id, segmentation...
    problems: list = field(default_factory=list)
    ignored_labels: Counter = field(default_factory=Counter)
    image_key: str = ""  # resolved image path, to find two files naming one image
    digest: str = ""  # sha1 of the image bytes, to find byte-identical duplicates
    group: str = ""  # split unit: augmented copies stay with their source (flags.augmented_from)
    embedded: bytes | None = None  # imageData to write to ``image_key`` (see prepare_dataset)


def _inside(path: Path, roots: tuple) -> bool:
    return any(path == r or r in path.parents for r in roots)


class ImageProblem(ValueError):
    """An image that cannot be used; the message says why (without the file name)."""


def image_size(data: bytes) -> tuple[int, int, str]:
    """(width, height, format) of an encoded image, decoded in full.

    The size is the one labelme and detectron2 see: after the EXIF orientation is applied.

    Raises:
        ImageProblem: not an image, over :data:`MAX_IMAGE_PIXELS`, truncated or corrupt.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageProblem(
                        f"is {w}x{h} = {w * h} pixels, over the limit of {MAX_IMAGE_PIXELS}"
                    )
                fmt = (im.format or "png").lower()
                orientation = im.getexif().get(_EXIF_ORIENTATION)
                im.load()  # a truncated file fails here, not at training time
    except Image.DecompressionBombError:
        raise ImageProblem(
            f"claims over {2 * MAX_IMAGE_PIXELS} pixels, over the limit of {MAX_IMAGE_PIXELS}"
        ) from None
    except UnidentifiedImageError:
        raise ImageProblem("is not an image PIL can read") from None
    except ImageProblem:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for corrupt data
        raise ImageProblem(f"cannot be decoded ({_first_line(e)})") from None
    if w <= 0 or h <= 0:
        raise ImageProblem(f"has an empty size {w}x{h}")
    return (h, w, fmt) if orientation in _TRANSPOSED else (w, h, fmt)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def _error(res: FileResult, kind: str, message: str) -> None:
    res.problems.append(Problem(ERROR, kind, res.json_rel, message))


def _warn(res: FileResult, kind: str, message: str) -> None:
    res.problems.append(Problem(WARNING, kind, res.json_rel, message))


def _locate_image(doc: LabelmeFile, res: FileResult, ctx: ConvertContext):
    """Return (image path, bytes, size or None), or None after recording an error. An embedded
    image's path is where it will be written (``res.embedded`` is set), its size is known."""
    path = doc.image_path
    if path is not None and path.is_file():
        resolved = path.resolve()
        if not _inside(resolved, ctx.allowed_roots or (ctx.input_root.resolve(),)):
            return _error(res, "path_escape", f"imagePath {path} resolves outside the dataset root")
        try:
            if resolved.stat().st_size > MAX_IMAGE_BYTES:
                return _error(
                    res, "image_too_large", f"image {path} is over {MAX_IMAGE_BYTES} bytes"
                )
            return resolved, resolved.read_bytes(), None
        except OSError as e:
            return _error(res, "unreadable_image", f"cannot read image {path} ({e.strerror})")
    if doc.image_data is not None:  # embedded image: written out once, byte for byte
        try:
            width, height, fmt = image_size(doc.image_data)
        except ImageProblem as e:
            return _error(res, "unreadable_image", f"embedded imageData {e}")
        ext = {"jpeg": "jpg"}.get(fmt, fmt)
        out = ctx.output_root / EMBEDDED_DIR / Path(res.json_rel).with_suffix(f".{ext}")
        res.embedded = doc.image_data
        return out.resolve(), doc.image_data, (width, height)
    return _error(res, "missing_image", f"image {path} not found and no imageData")


def _instances(doc: LabelmeFile, res: FileResult, ctx: ConvertContext, width: int, height: int):
    """Shapes -> instances: shapes sharing (class, group_id) form one instance."""
    groups: dict[tuple, list[np.ndarray]] = {}
    ignored_types: Counter = Counter()
    clipped = 0
    for i, shape in enumerate(doc.shapes):
        cls = ctx.label_map.class_of(shape.label)
        if cls is None:
            res.ignored_labels[shape.label] += 1
            continue
        poly = shape_to_polygon(shape.shape_type, shape.points)
        if poly is None:
            ignored_types[shape.shape_type] += 1
            continue
        if not np.isfinite(poly).all():  # a circle of astronomic radius: cos * inf
            _warn(res, "bad_points", f"shape {i} ({shape.label!r}) is out of range, dropped")
            continue
        if len(poly) < 3:
            _warn(
                res,
                "too_few_points",
                f"shape {i} ({shape.label!r}) has {len(poly)} point(s), dropped",
            )
            continue
        poly, moved = clip_polygon(poly, width, height)
        clipped += moved
        x, y = poly[:, 0], poly[:, 1]
        if abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) < 1e-9:  # shoelace
            _warn(res, "zero_area", f"shape {i} ({shape.label!r}) has zero area, dropped")
            continue
        key = (cls, shape.group_id if shape.group_id is not None else ("shape", i))
        groups.setdefault(key, []).append(poly)
    if clipped:
        _warn(res, "clipped", f"{clipped} shape(s) had points outside the image, clipped")
    for stype, n in sorted(ignored_types.items()):
        _warn(res, "ignored_shape_type", f"{n} {stype!r} shape(s) ignored")
    for (cls, _), polys in groups.items():
        area, bbox = mask_stats(polys, height, width)
        if area <= 0:
            _warn(res, "zero_area", f"a {cls!r} instance covers no pixel, dropped")
            continue
        res.instances.append(
            {
                "class": cls,
                "category_id": ctx.label_map.category_id(cls),
                "area": area,
                "bbox": bbox,
                "segmentation": [np.round(p, 2).ravel().tolist() for p in polys],
            }
        )


def convert_labelme_file(json_path: str | os.PathLike, ctx: ConvertContext) -> FileResult:
    """Validate and convert one labelme file (see module docstring); never raises: anything
    unexpected skips the file with one line naming it, so one file cannot abort a batch."""
    json_path = Path(json_path)
    rel = Path(os.path.relpath(json_path, ctx.input_root)).as_posix()
    try:
        return _convert(json_path, FileResult(rel), ctx)
    except Exception as e:  # a bug or an exotic input: report it with the file, go on
        res = FileResult(rel)
        _error(res, "unexpected", f"cannot be converted ({type(e).__name__}: {_first_line(e)})")
        return res


def _convert(json_path: Path, res: FileResult, ctx: ConvertContext) -> FileResult:
    try:
        doc = read_labelme_json(json_path)
    except LabelmeError as e:
        _error(res, "invalid_json", str(e).split(": ", 1)[-1])
        return res
    for kind, message in doc.warnings:
        _warn(res, kind, message)
    located = _locate_image(doc, res, ctx)
    if located is None:
        return res
    image_path, data, size = located
    if size is None:
        try:
            size = image_size(data)[:2]
        except ImageProblem as e:
            _error(res, "unreadable_image", f"image {image_path.name} {e}")
            return res
    width, height = size
    if (doc.height, doc.width) != (None, None) and (doc.height, doc.width) != (height, width):
        msg = f"JSON says {doc.width}x{doc.height}, image {image_path.name} is {width}x{height}"
        _error(res, "size_mismatch", msg)
        return res
    unknown = sorted({s.label for s in doc.shapes if not ctx.label_map.knows(s.label)})
    if unknown:
        _error(res, "unknown_label", f"unknown label(s) {unknown} (add to {ctx.label_map.source})")
        return res
    _instances(doc, res, ctx, width, height)
    res.file_name = Path(os.path.relpath(image_path, ctx.output_root.resolve())).as_posix()
    res.width, res.height = width, height
    res.image_key = str(image_path)
    res.digest = hashlib.sha1(data).hexdigest()
    res.group = str(doc.flags.get(AUGMENTED_FROM) or res.json_rel)
    res.ok = True
    return res
