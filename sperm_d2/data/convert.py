"""Convert ONE labelme file into a COCO image entry + instances, validating as it goes.

Pure Python + numpy/pycocotools/PIL (no torch, no detectron2) so it runs in worker processes.
Errors skip the file; warnings keep it with the offending shape fixed (clipped) or dropped
(only shapes that cover no pixel: a labelled shape that gives no outline is an error), or
kept as they are where a sperm's parts contradict anatomy (:mod:`sperm_d2.data.label_checks`).
Every image is decoded in full once (never re-encoded), so a truncated or corrupt file is an
error here, not a crash in training; an image over :data:`MAX_IMAGE_PIXELS` is refused before
it is decoded. Nothing is written: an embedded ``imageData`` image is returned with its target
path and written by the caller once the whole dataset is known to be usable.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sperm_d2.data.geometry import PolygonBatch, instances_stats
from sperm_d2.data.label_checks import split_nuclei
from sperm_d2.data.labelme_io import LabelmeError, LabelmeFile, read_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.problems import ERROR, WARNING, Problem
from sperm_d2.data.shapes import ShapeProblem, shape_outlines
from sperm_d2.errors import SpermInputError
from sperm_d2.image_io import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    TRANSPOSED_ORIENTATIONS,
    accepted_formats,
    exif_orientation,
    image_shape_problem,
    is_image_path,
    not_a_regular_file,
    picture_difference,
    preoriented_exif_tag,
)

AUGMENTED_FROM = "augmented_from"  # labelme flag set by sperm_d2.data.balance on its copies
EMBEDDED_DIR = "images"  # embedded imageData is written out under <output_root>/images/
_DRAFT_FORMATS = ("JPEG", "MPO")  # decoded at reduced scale by image_size (same checks)
#: PIL modes of one-channel images deeper than 8 bits. detectron2's training reader converts
#: them with PIL, which clips every value above 255 instead of scaling it (inference's OpenCV
#: reader scales): the model would train on white images, so they are refused here.
_CLIPPED_MODES = {"I": "32-bit integer grey", "F": "32-bit float grey"}
#: the part classes of the Sperm Parsing data (``sperm_d2.parts.targets.PART_CLASSES``, which
#: cannot be imported here: that package loads torch); a test keeps the two equal
PART_NAMES = ("acrosome", "nucleus", "vacuole", "midpiece", "tail")


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


class ImageProblem(SpermInputError, ValueError):
    """An image that cannot be used; the message says why (without the file name)."""


def image_size(data: bytes) -> tuple[int, int, str]:
    """(width, height, format) of an encoded image, decoded in full.

    The size is the one labelme, inference and detectron2 see: the upright image, its EXIF
    orientation applied once (the tag is read after decoding: Pillow has already applied a
    TIFF's on open, see :mod:`sperm_d2.image_io`).
    A JPEG is decoded at 1/8 scale in grey (libjpeg's DCT scaling, PIL's ``draft``): all of its
    entropy-coded data is still decoded, so a truncated or corrupt file fails as at full size,
    at about half the cost (what it skips is the full inverse DCT, upsampling and colour
    conversion, which cannot fail); if it fails, the full decode decides, so the verdict and
    message are the full decode's (``tests/test_data_convert_fast.py`` checks truncations and
    byte flips).

    Raises:
        ImageProblem: not an image, over :data:`MAX_IMAGE_PIXELS`, more than 8 bits in one
            channel (:data:`_CLIPPED_MODES`), truncated or corrupt, or an orientation tag
            detectron2's training reader would apply twice (a turned TIFF), or a size out of
            :func:`sperm_d2.image_io.image_shape_problem`'s limits.
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
                clipped = _clipped_mode_problem(im.mode)
                if clipped:
                    raise ImageProblem(clipped)
                fmt = (im.format or "png").lower()
                stored = exif_orientation(im)
                _decode(im, data, w, h)  # a truncated file fails here, not at training time
                orientation = exif_orientation(im)  # what is left to apply after decoding
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
    if stored is not None and orientation != stored:
        raise ImageProblem(
            f"is a {fmt.upper()} with EXIF orientation {stored}, which Pillow applies on open "
            "and detectron2's training reader applies again (it would train on a turned image): "
            "save it upright without the orientation tag (e.g. as PNG)"
        )
    shape = image_shape_problem(w, h)
    if shape:
        raise ImageProblem(shape)
    return (h, w, fmt) if orientation in TRANSPOSED_ORIENTATIONS else (w, h, fmt)


def _clipped_mode_problem(mode: str) -> str | None:
    """Why an image of PIL ``mode`` is refused for its depth (:data:`_CLIPPED_MODES`), or
    ``None``."""
    if mode in _CLIPPED_MODES or mode.startswith("I;16"):
        return (
            f"is a {_CLIPPED_MODES.get(mode, '16-bit grey')} image (mode {mode}); training reads "
            "it clipped to 8 bits (all but the darkest pixels white): save it as 8-bit"
        )
    return None


def stored_format_problem(path: str | os.PathLike) -> str | None:
    """Why :func:`image_size` would refuse the image at ``path`` for how it is stored rather than
    for what it shows: more than 8 bits in one channel, or an orientation tag Pillow applies on
    open (:func:`sperm_d2.image_io.preoriented_exif_tag`). ``None`` for an image it accepts that
    way, and for a file PIL cannot read (corrupt or not an image: :func:`image_size` says why).

    ``infer.py --labelme`` writes such an image decoded (8-bit, upright) instead of copying it,
    so that the copy it hands the annotator is one this converter takes.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                clipped = _clipped_mode_problem(im.mode)
    except Exception:  # noqa: BLE001 - unreadable: not a question of format
        return None
    if clipped:
        return clipped
    tag = preoriented_exif_tag(path)
    return f"has an EXIF orientation {tag} Pillow applies on open" if tag else None


def _decode(im: Image.Image, data: bytes, w: int, h: int) -> None:
    """Decode ``im`` (opened from ``data``) for its errors alone: a JPEG at 1/8 scale in grey.
    Should that fail, the full decode decides (and words the error): a file libjpeg cannot
    scale (lossless JPEG) is judged as before."""
    if im.format not in _DRAFT_FORMATS:
        im.load()
        return
    try:
        im.draft("L", (max(1, w // 8), max(1, h // 8)))
        im.load()
    except Exception:
        with Image.open(io.BytesIO(data)) as full:
            full.load()


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
    only one that covers no pixel is dropped. A part (:data:`PART_NAMES`) without a group_id is
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
        if shape.group_id is None and cls in PART_NAMES:
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
