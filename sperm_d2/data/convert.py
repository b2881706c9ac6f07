"""Convert ONE labelme file into a COCO image entry + instances, validating as it goes.

Pure Python + numpy/pycocotools/PIL (no torch, no detectron2) so it runs in worker processes.
Errors skip the file; warnings keep it with the offending shape fixed (clipped) or dropped
(only shapes that cover no pixel: a labelled shape that gives no outline is an error), or
kept as they are where a sperm's parts contradict anatomy (:mod:`sperm_d2.data.label_checks`).
Every image is decoded in full once (never re-encoded), so a truncated or corrupt file is an
error here, not a crash in training; an image too large, too deep or turned by its EXIF tag is
refused too (:mod:`sperm_d2.data.image_checks`). Nothing is written: an embedded ``imageData``
image is returned with its target path and written by the caller once the whole dataset is
known to be usable.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sperm_d2.data.geometry import PolygonBatch, instances_stats
from sperm_d2.data.image_checks import ImageProblem, image_size
from sperm_d2.data.label_checks import split_nuclei
from sperm_d2.data.labelme_io import LabelmeError, LabelmeFile, read_labelme_json
from sperm_d2.data.labels import PART_CLASSES, LabelMap
from sperm_d2.data.problems import ERROR, WARNING, Problem, first_line
from sperm_d2.data.shapes import ShapeProblem, shape_outlines
from sperm_d2.image_io import (
    MAX_IMAGE_BYTES,
    accepted_formats,
    is_image_path,
    not_a_regular_file,
    picture_difference,
)

AUGMENTED_FROM = "augmented_from"  # labelme flag set by sperm_d2.data.balance on its copies
EMBEDDED_DIR = "images"  # embedded imageData is written out under <output_root>/images/


@dataclass(frozen=True)
class ConvertContext:
    """What every file's conversion needs; picklable for worker processes."""

    input_root: Path  # JSON paths are reported relative to this
    output_root: Path  # COCO file_name is relative to this
    label_map: LabelMap
    allowed_roots: tuple = ()  # images must resolve inside one of these (default: input_root)

    @functools.cached_property
    def resolved_output_root(self) -> Path:
        """``output_root`` resolved once per run (not once per file)."""
        return self.output_root.resolve()


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
    digest: str = ""  # sha256 of the image bytes: duplicates; the manifest's hash if embedded
    group: str = ""  # split unit: augmented copies stay with their source (flags.augmented_from)
    embedded: bytes | None = None  # imageData to write to ``image_key`` (see prepare_dataset)


def _inside(path: Path, roots: tuple) -> bool:
    return any(path == r or r in path.parents for r in roots)


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
            return _error(
                res,
                "path_escape",
                f"imagePath {path} resolves to {resolved}, outside --input and every --image-root",
            )
        try:
            if resolved.stat().st_size > MAX_IMAGE_BYTES:
                return _error(
                    res, "image_too_large", f"image {path} is over {MAX_IMAGE_BYTES} bytes"
                )
            data = resolved.read_bytes()
        except OSError as e:
            return _error(res, "unreadable_image", f"cannot read image {path} ({e.strerror})")
        differs = picture_difference(data, doc.image_data) if doc.image_data else None
        if not differs:
            return resolved, data, None
        # labelme shows the embedded image when there is one: the outlines were drawn on it
        _warn(
            res,
            "embedded_image_differs",
            f"imagePath {path} and the embedded imageData differ ({differs}); the embedded "
            "image, the one labelme showed, is used",
        )
    if doc.image_data is not None:  # embedded image: written out once, byte for byte
        try:
            width, height, fmt = image_size(doc.image_data)
        except ImageProblem as e:
            return _error(res, "unreadable_image", f"embedded imageData {e}")
        ext = {"jpeg": "jpg", "mpo": "jpg"}.get(fmt, fmt)
        out = ctx.output_root / EMBEDDED_DIR / Path(res.json_rel).with_suffix(f".{ext}")
        res.embedded = doc.image_data
        return out.resolve(), doc.image_data, (width, height)
    if path is not None and os.path.lexists(path):  # a FIFO, a broken symlink, a folder...
        return _error(res, "unreadable_image", f"image {path} {not_a_regular_file(path)}")
    return _error(res, "missing_image", f"image {path} not found and no imageData")


def _instances(doc: LabelmeFile, res: FileResult, ctx: ConvertContext, width: int, height: int):
    """Shapes -> instances: shapes sharing (class, group_id) form one instance.

    All the polygons of the file are checked, clipped and measured at once
    (:class:`~sperm_d2.data.geometry.PolygonBatch`); problems are reported shape by shape, in
    order. A shape of a class that gives no outline (a point, a line, a mask without data...,
    see :mod:`sperm_d2.data.shapes`) refuses the file: kept, its head or part would be
    background. A polygon whose shoelace area is zero (a bow-tie) counts by its filled pixels;
    only one that covers no pixel is dropped. A part (:data:`PART_CLASSES`) without a group_id is
    kept with a warning: it belongs to no sperm, so the head-part training leaves it out.
    """
    classes: dict[str, str | None] = {}  # label -> class, looked up once per distinct label
    shapes, points, lengths = [], [], []  # (shape index, shape, class) per polygon, maybe short
    refused: list[tuple[str, str]] = []  # (why, class) of each labelled shape with no outline
    empty: list[str] = []  # masks without a pixel: dropped, as a polygon covering none
    unlinked: list[str] = []  # parts without a group_id: they belong to no sperm
    for i, shape in enumerate(doc.shapes):
        if shape.label not in classes:
            classes[shape.label] = ctx.label_map.class_of(shape.label)
        cls = classes[shape.label]
        if cls is None:
            res.ignored_labels[shape.label] += 1
            continue
        if shape.group_id is None and cls in PART_CLASSES:
            unlinked.append(f"shape {i} ({shape.label!r})")
        if shape.shape_type == "polygon":  # [x, y] pairs already (labelme_io checked them)
            outlines = [shape.points]
        else:
            try:
                outlines = [poly.tolist() for poly in shape_outlines(shape)]
            except ShapeProblem as e:
                stype = shape.shape_type
                why = f"shape {i} ({shape.label!r}, shape_type {stype!r}): {e}"
                refused.append((why, cls))
                continue
            if not outlines:  # an empty mask
                empty.append(f"shape {i} ({shape.label!r}) covers no pixel, dropped")
        for pts in outlines:
            shapes.append((i, shape, cls))
            points.extend(pts)
            lengths.append(len(pts))
    if refused:
        (why, cls), more = refused[0], ""
        if len(refused) > 1:
            more = f" ({len(refused) - 1} more such shape(s))"
        msg = (
            f"{why}; an annotated {cls} without an outline (if kept, its pixels would read as "
            f"background): the image is skipped{more}"
        )
        _error(res, "unconvertible_shape", msg)
        return
    for msg in empty:
        _warn(res, "zero_area", msg)
    if unlinked:
        _warn(res, "no_group_id", _unlinked_message(unlinked))
    batch = PolygonBatch(points, lengths)
    finite = batch.finite()  # a circle of astronomic radius: cos * inf
    usable = finite & (batch.lengths >= 3)
    clipped, moved = batch.clip(width, height)
    zero = np.zeros(len(batch), dtype=bool)
    zero[usable] = batch.zero_area(clipped, np.flatnonzero(usable))
    for k in np.flatnonzero(zero):  # rare: a self-intersecting outline may still cover pixels
        s, e = batch.starts[k], batch.ends[k]
        zero[k] = instances_stats([[clipped[s:e].ravel().tolist()]], height, width)[0][0] <= 0
    groups: dict[tuple, list[int]] = {}
    for k, (i, shape, cls) in enumerate(shapes):
        if not finite[k]:
            _warn(res, "bad_points", f"shape {i} ({shape.label!r}) is out of range, dropped")
        elif not usable[k]:
            n = int(batch.lengths[k])
            _warn(res, "too_few_points", f"shape {i} ({shape.label!r}) has {n} point(s), dropped")
        elif zero[k]:
            _warn(res, "zero_area", f"shape {i} ({shape.label!r}) covers no pixel, dropped")
        else:
            key = (cls, shape.group_id if shape.group_id is not None else ("shape", i))
            groups.setdefault(key, []).append(k)
    clipped_shapes = len({shapes[k][0] for k in np.flatnonzero(moved & usable)})
    if clipped_shapes:
        _warn(res, "clipped", f"{clipped_shapes} shape(s) had points outside the image, clipped")
    if not groups:
        return
    # flat [x0, y0, x1, ...] lists: unrounded for the masks, rounded to 0.01 px for the output
    flat, rounded = clipped.ravel().tolist(), np.round(clipped, 2).ravel().tolist()
    spans = [(2 * s, 2 * e) for s, e in zip(batch.starts.tolist(), batch.ends.tolist())]
    areas, boxes = instances_stats(
        [[flat[slice(*spans[k])] for k in ks] for ks in groups.values()], height, width
    )
    for ((cls, gid), ks), area, bbox in zip(groups.items(), areas, boxes):
        if area <= 0:
            _warn(res, "zero_area", f"a {cls!r} instance covers no pixel, dropped")
            continue
        inst = {
            "class": cls,
            "category_id": ctx.label_map.category_id(cls),
            "area": area,
            "bbox": bbox,
            "segmentation": [rounded[slice(*spans[k])] for k in ks],
        }
        if isinstance(gid, int):  # the annotator's group_id links the parts of one sperm
            inst["group_id"] = gid
        res.instances.append(inst)
    _check_parts(res)


def _unlinked_message(unlinked: list[str]) -> str:
    """One line naming the part shapes without a group_id (the first few, then how many more)."""
    named = ", ".join(unlinked[:5])
    if len(unlinked) > 5:
        named += f" and {len(unlinked) - 5} more"
    have = "has no group_id: it links" if len(unlinked) == 1 else "have no group_id: they link"
    return (
        f"{named} {have} to no sperm (head-part training and metrics leave "
        f"{'it' if len(unlinked) == 1 else 'them'} out); give each part its sperm's group_id "
        "in labelme"
    )


def _check_parts(res: FileResult) -> None:
    """Warn about sperm whose parts contradict anatomy (:mod:`sperm_d2.data.label_checks`)."""
    split = split_nuclei((i["class"], i.get("group_id"), i["segmentation"]) for i in res.instances)
    if split:
        listed = ", ".join(f"{gid} ({n} nucleus polygons)" for gid, n in sorted(split.items()))
        msg = (
            f"sperm with group_id {listed}: no acrosome and a split nucleus, probably an "
            "acrosome labelled nucleus (the acrosome share reads 0 %); check in labelme"
        )
        _warn(res, "split_nucleus", msg)


def convert_labelme_file(json_path: str | os.PathLike, ctx: ConvertContext) -> FileResult:
    """Validate and convert one labelme file (see module docstring); never raises: anything
    unexpected skips the file with one line naming it, so one file cannot abort a batch."""
    json_path = Path(json_path)
    rel = Path(os.path.relpath(json_path, ctx.input_root)).as_posix()
    try:
        return _convert(json_path, FileResult(rel), ctx)
    except Exception as e:  # a bug or an exotic input: report it with the file, go on
        res = FileResult(rel)
        _error(res, "unexpected", f"cannot be converted ({type(e).__name__}: {first_line(e)})")
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
    if not is_image_path(image_path):  # the one list of formats every tool reads
        _error(
            res,
            "unreadable_image",
            f"image {image_path.name}: {image_path.suffix or 'no extension'} is not an accepted "
            f"image format ({accepted_formats()})",
        )
        return res
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
    labels = {s.label for s in doc.shapes}
    unknown = sorted(lab for lab in labels if not ctx.label_map.knows(lab))
    if unknown:
        _error(res, "unknown_label", f"unknown label(s) {unknown} (add to {ctx.label_map.source})")
        return res
    _instances(doc, res, ctx, width, height)
    if any(p.level == ERROR for p in res.problems):  # a shape that gives no outline
        return res
    res.file_name = Path(os.path.relpath(image_path, ctx.resolved_output_root)).as_posix()
    res.width, res.height = width, height
    res.image_key = str(image_path)
    res.digest = hashlib.sha256(data).hexdigest()
    res.group = str(doc.flags.get(AUGMENTED_FROM) or res.json_rel)
    res.ok = True
    return res
