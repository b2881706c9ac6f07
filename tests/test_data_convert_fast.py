"""The fast conversion path (issue 13) gives what the reference (per-shape) code gives, bit for bit:
batched polygon clipping / zero-area / mask stats, orjson parsing and writing, the reduced-scale
JPEG check, and prepare_dataset's COCO bytes."""

import base64
import hashlib
import io
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, UnidentifiedImageError

from sperm_d2.data import labelme_io
from sperm_d2.data.coco import coco_bytes
from sperm_d2.data.convert import ConvertContext, FileResult, _instances, convert_labelme_file
from sperm_d2.data.geometry import (
    ZERO_AREA2,
    PolygonBatch,
    clip_polygon,
    instances_stats,
    mask_stats,
    shoelace2,
)
from sperm_d2.data.image_checks import ImageProblem, image_size
from sperm_d2.data.labelme_io import LabelmeFile, LabelmeShape, read_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import prepare_dataset
from sperm_d2.data.problems import Problem
from sperm_d2.data.shapes import ShapeProblem, shape_outlines
from sperm_d2.image_io import MAX_IMAGE_PIXELS

from .conftest import REPO

LM = LabelMap.load(REPO / "configs/labels/default.yaml")


# --- the reference: the converter shape by shape (before issue 13), with its shape rules -------


def _ref_instances(doc: LabelmeFile, width: int, height: int, rel: str = "x.json") -> FileResult:
    res, warned = FileResult(rel), []  # warnings: only if the file is not refused

    def warn(kind, msg):
        warned.append(Problem("warning", kind, res.json_rel, msg))

    groups, refused, clipped, empty = {}, [], set(), []
    for i, shape in enumerate(doc.shapes):
        cls = LM.class_of(shape.label)
        if cls is None:
            res.ignored_labels[shape.label] += 1
            continue
        try:
            polys = shape_outlines(shape)
        except ShapeProblem as e:
            why = f"shape {i} ({shape.label!r}, shape_type {shape.shape_type!r}): {e}"
            refused.append((why, cls))
            continue
        if not polys:  # an empty mask
            msg = f"shape {i} ({shape.label!r}) covers no pixel, dropped"
            empty.append(Problem("warning", "zero_area", rel, msg))
        for poly in polys:
            if not np.isfinite(poly).all():
                warn("bad_points", f"shape {i} ({shape.label!r}) is out of range, dropped")
                continue
            if len(poly) < 3:
                n = len(poly)
                warn("too_few_points", f"shape {i} ({shape.label!r}) has {n} point(s), dropped")
                continue
            poly, moved = clip_polygon(poly, width, height)
            if moved:
                clipped.add(i)
            x, y = poly[:, 0], poly[:, 1]
            if abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) < 1e-9:
                if mask_stats([poly], height, width)[0] <= 0:  # a bow-tie covers pixels
                    warn("zero_area", f"shape {i} ({shape.label!r}) covers no pixel, dropped")
                    continue
            key = (cls, shape.group_id if shape.group_id is not None else ("shape", i))
            groups.setdefault(key, []).append(poly)
    if refused:
        more = f" ({len(refused) - 1} more such shape(s))" if len(refused) > 1 else ""
        why, cls = refused[0]
        msg = (
            f"{why}; an annotated {cls} without an outline (if kept, its pixels would read as "
            f"background): the image is skipped{more}"
        )
        res.problems.append(Problem("error", "unconvertible_shape", res.json_rel, msg))
        return res
    res.problems += empty + warned
    warned = res.problems  # later warnings go straight to the file's list
    if clipped:
        warn("clipped", f"{len(clipped)} shape(s) had points outside the image, clipped")
    for (cls, gid), polys in groups.items():
        area, bbox = mask_stats(polys, height, width)
        if area <= 0:
            warn("zero_area", f"a {cls!r} instance covers no pixel, dropped")
            continue
        res.instances.append(
            {
                "class": cls,
                "category_id": LM.category_id(cls),
                "area": area,
                "bbox": bbox,
                "segmentation": [np.round(p, 2).ravel().tolist() for p in polys],
                **({"group_id": gid} if isinstance(gid, int) else {}),
            }
        )
    return res


def _ref_image_size(data: bytes) -> tuple[int, int, str]:
    """image_size before issue 13: every image decoded at full size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageProblem(f"is {w}x{h}")
                fmt = (im.format or "png").lower()
                orientation = im.getexif().get(0x0112)
                im.load()
    except UnidentifiedImageError:
        raise ImageProblem("is not an image PIL can read") from None
    except ImageProblem:
        raise
    except Exception as e:
        text = str(e).strip()
        line = (text.splitlines()[0] if text else type(e).__name__)[:200]
        raise ImageProblem(f"cannot be decoded ({line})") from None
    return (h, w, fmt) if orientation in (5, 6, 7, 8) else (w, h, fmt)


def _same(a, b) -> bool:
    """Equal, and floats equal bit for bit (-0.0 is not 0.0), in nested lists/dicts."""
    return json.dumps(a, allow_nan=True) == json.dumps(b, allow_nan=True)


def _results_equal(new: FileResult, ref: FileResult) -> None:
    assert [p.to_dict() for p in new.problems] == [p.to_dict() for p in ref.problems]
    assert new.ignored_labels == ref.ignored_labels
    assert _same(new.instances, ref.instances)


# --- polygons: batch == reference, shape by shape ----------------------------------------------

coord = st.one_of(
    st.floats(-60, 160, allow_nan=False),
    st.integers(-60, 160).map(float),
    st.sampled_from([0.0, -0.0, 100.0, 80.0, 1e-12, -1e-12, 1e6, -1e9]),
)
polygon = st.lists(st.tuples(coord, coord), min_size=0, max_size=10)


def _degenerate(rng: np.random.Generator) -> list[np.ndarray]:
    """Collinear, repeated, sliver and near-threshold polygons (area2 around 1e-9), far from
    the origin too, where the summation order changes the last bits."""
    out = []
    for _ in range(60):
        base = rng.uniform(0, 100, 2) * rng.choice([1, 1e3])
        d = rng.uniform(-1, 1, 2)
        n = int(rng.integers(3, 9))
        out.append(base + np.outer(rng.uniform(0, 5, n), d))  # collinear
        out.append(np.repeat(base[None], n, axis=0))  # one point repeated
        a = 1e-9 * rng.uniform(0.5, 1.5)  # triangle of area2 ~ the threshold
        out.append(base + np.array([[0.0, 0.0], [a, 0.0], [0.0, 1.0]]))
        out.append(base + rng.uniform(0, 1e-6, (n, 2)))  # sliver
        # long and collinear, far from the origin: its computed area2 is rounding noise around
        # the threshold, and a different summation order alone flips the decision (1 in 3)
        far = rng.uniform(200, 1000, 2)
        out.append(far + np.outer(rng.uniform(0, 30, int(rng.integers(10, 60))), d))
    return out


def _batch_vs_reference(polys: list[np.ndarray], width: int, height: int) -> None:
    pts = [p for poly in polys for p in np.asarray(poly, dtype=float).reshape(-1, 2).tolist()]
    batch = PolygonBatch(pts, [len(p) for p in polys])
    clipped, moved = batch.clip(width, height)
    finite = batch.finite()
    usable = np.flatnonzero(finite & (batch.lengths >= 3))
    zero = batch.zero_area(clipped, usable)
    for k, poly in enumerate(polys):
        poly = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        s, e = batch.starts[k], batch.ends[k]
        assert finite[k] == np.isfinite(poly).all()
        if not finite[k] or len(poly) < 3:
            continue
        ref, ref_moved = clip_polygon(poly, width, height)
        got = clipped[s:e]
        assert np.array_equal(got, ref) and np.array_equal(np.signbit(got), np.signbit(ref))
        assert moved[k] == ref_moved
        j = int(np.flatnonzero(usable == k)[0])
        assert zero[j] == (abs(shoelace2(ref)) < ZERO_AREA2), (poly, shoelace2(ref))


@settings(max_examples=200, deadline=None)
@given(polys=st.lists(polygon, min_size=1, max_size=8), width=st.integers(1, 120))
def test_batch_matches_per_polygon_reference(polys, width) -> None:
    _batch_vs_reference([np.array(p, dtype=float).reshape(-1, 2) for p in polys], width, 90)


def test_batch_matches_reference_on_degenerate_and_edge_polygons() -> None:
    rng = np.random.default_rng(0)
    polys = _degenerate(rng)
    polys += [
        np.zeros((0, 2)),
        np.array([[1.0, 2.0]]),
        np.array([[1.0, 2.0], [3.0, 4.0]]),
        np.array([[np.inf, 0.0], [1.0, 1.0], [2.0, 0.0]]),
        np.array([[np.nan, 0.0], [1.0, 1.0], [2.0, 0.0]]),
        np.array([[-10.0, -10.0], [-5.0, -10.0], [-5.0, -5.0]]),  # outside: clipped to a point
        np.array([[-5.0, 5.0], [200.0, 5.0], [200.0, 6.0], [-5.0, 6.0]]),  # crossing both sides
        np.array([[-0.0, 1.0], [3.0, -0.0], [3.0, 3.0]]),  # signed zeros stay as they were
    ]
    _batch_vs_reference(polys, 100, 80)
    _batch_vs_reference(polys, 1280, 1024)


def test_instances_stats_match_mask_stats() -> None:
    rng = np.random.default_rng(1)
    instances = []
    for _ in range(30):
        c = rng.uniform(0, 100, 2)
        instances.append([c + rng.uniform(-15, 15, (int(rng.integers(3, 12)), 2)) for _ in "ab"])
    areas, boxes = instances_stats([[p.ravel().tolist() for p in i] for i in instances], 90, 110)
    for polys, area, box in zip(instances, areas, boxes):
        assert (area, box) == mask_stats(polys, 90, 110)
        assert type(area) is float and all(type(v) is float for v in box)
    assert instances_stats([], 10, 10) == ([], [])


shape_st = st.builds(
    lambda label, pts, gid, stype: LabelmeShape(label, [list(p) for p in pts], stype, gid),
    st.sampled_from(["normal", "tapered", "good", "debris", "bad morphological quality"]),
    polygon,
    st.one_of(st.none(), st.integers(0, 3)),
    st.sampled_from(["polygon"] * 12 + ["rectangle", "rotation", "circle", "line", "point"]),
)


@settings(max_examples=200, deadline=None)
@given(shapes=st.lists(shape_st, max_size=12), width=st.integers(1, 120))
def test_instances_match_the_reference_converter(shapes, width) -> None:
    doc = LabelmeFile(Path("x.json"), shapes, None, None, 90, width)
    new = FileResult("x.json")
    _instances(doc, new, ConvertContext(Path("."), Path("."), LM), width, 90)
    _results_equal(new, _ref_instances(doc, width, 90))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_instances_match_the_reference_on_odd_shapes() -> None:
    rng = np.random.default_rng(2)
    shapes = [
        LabelmeShape("normal", p.tolist(), "polygon", i % 3)
        for i, p in enumerate(_degenerate(rng)[:80])
    ]
    shapes += [
        LabelmeShape("bad", [[1e308, 1e308], [-1e308, -1e308]], "circle"),  # radius: inf
        LabelmeShape("bad", [[5.0, 5.0], [8.0, 9.0]], "circle", 7),
        LabelmeShape("bad", [[-5.0, 5.0], [30.0, 90.0]], "rectangle", 7),
        LabelmeShape("good", [[1.0, 1.0]], "rectangle"),
        LabelmeShape("debris", [[1.0, 1.0], [9.0, 1.0], [9.0, 9.0]]),
        LabelmeShape("debris", [[1.0, 1.0], [2.0, 2.0]], "linestrip"),  # ignored label
        LabelmeShape("good", [[1.0, 1.0], [9.0, 9.0], [9.0, 1.0], [1.0, 9.0]]),  # a bow-tie
        LabelmeShape("good", [], "polygon"),
    ]
    doc = LabelmeFile(Path("x.json"), shapes, None, None, 80, 100)
    new = FileResult("x.json")
    _instances(doc, new, ConvertContext(Path("."), Path("."), LM), 100, 80)
    _results_equal(new, _ref_instances(doc, 100, 80))
    kinds = Counter(p.kind for p in new.problems)
    assert kinds["zero_area"] and kinds["bad_points"] and kinds["too_few_points"]


# --- JSON in: orjson gives what the standard library gives -------------------------------------

scalar = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(pts=st.one_of(st.lists(st.lists(scalar, max_size=3), max_size=6), scalar))
def test_points_fast_path_matches_the_point_by_point_check(pts) -> None:
    def outcome(fn):
        try:
            return fn(pts)
        except (ValueError, OverflowError) as e:
            return f"{type(e).__name__}: {e}"

    fast = labelme_io._points_fast(pts)
    assert fast is None or _same(fast, labelme_io._points_each(pts))
    assert _same(outcome(labelme_io._points), outcome(labelme_io._points_each))


def _reference_read(path: Path):
    """read_labelme_json with the standard library alone (the code before issue 13)."""
    raw = path.read_bytes()
    try:
        return labelme_io._parse(labelme_io._decode_stdlib(path, raw), path, exact=True)
    except labelme_io.LabelmeError as e:
        return f"LabelmeError: {e}"


def _read(path: Path):
    try:
        return read_labelme_json(path)
    except labelme_io.LabelmeError as e:
        return f"LabelmeError: {e}"


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 40).decode()
ODD_DOCUMENTS = [
    '{"shapes": [{"label": "a", "points": [[NaN, 1], [2, 3], [4, 5]]}], "imagePath": "a.png"}',
    '{"shapes": [{"label": "a", "points": [[1e400, 1], [2, 3], [4, 5]]}], "imagePath": "a.png"}',
    '{"shapes": [{"label": "a", "points": [[1, 2]], "group_id": 18446744073709551617}],'
    ' "imagePath": "a.png"}',
    '{"shapes": [{"label": "a", "points": [[1, 2]], "group_id": 18446744073709551616.5}],'
    ' "imagePath": "a.png"}',
    '{"shapes": [], "imagePath": "a.png", "imageHeight": 18446744073709551623}',
    '{"shapes": [], "imagePath": "a.png", "flags": {"augmented_from": 36893488147419103235}}',
    '{"shapes": [{"label": "a", "points": [], "flags": [18446744073709551617]}],'
    ' "imagePath": "a.png"}',
    '{"shapes": [{"label": "a", "points": [[18446744073709551617, 2]]}], "imagePath": "a.png"}',
    '{"shapes": [{"label": "a\\ud800", "points": []}], "imagePath": "a.png"}',
    '{"shapes": [{"label": "a", "points": [[1, true], [2, 3]]}], "imagePath": "a.png"}',
    '{"shapes": [{"label": "a", "points": [[1, "2"], [2, 3]]}], "imagePath": "a.png"}',
    '{"shapes": [{"label": "a", "points": [[1, 2, 3]]}], "imagePath": "a.png"}',
    '{"shapes": [{"label": "a", "points": [[1, 2]], "group_id": 2.0}], "imagePath": "a.png"}',
    '{"shapes": [], "imagePath": "a.png", "flags": [1, 2], "version": 5}',
    '{"shapes": null, "imagePath": "a\\\\b.png", "imageWidth": 3.0}',
    f'{{"shapes": [], "imageData": "{PNG[:20]}\\n{PNG[20:]}"}}',
    f'{{"shapes": [], "imageData": "{PNG[:-2]}"}}',
    f'{{"shapes": [], "imageData": " {PNG}"}}',
    '{"shapes": [], "imageData": "@@@@"}',
    '{"shapes": [], "imagePath": "a.png", "a": 1, "a": 2}',
    '{"shapes": [{"label": "a", "points": [[1, 2]]}]',
    "[1, 2]",
    '{"shapes": [], "imagePath": "\\u00e9\\u2028.png"}',
]


@pytest.mark.parametrize("text", ODD_DOCUMENTS)
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_read_labelme_json_matches_the_standard_library(tmp_path, text, bom) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(bom + text.encode())
    assert repr(_read(path)) == repr(_reference_read(path))


json_value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shapes=st.lists(
        st.fixed_dictionaries(
            {
                "label": st.sampled_from(["normal", "bad"]),
                "points": st.lists(st.lists(scalar, min_size=2, max_size=2), max_size=4),
            },
            optional={"group_id": scalar, "flags": json_value, "shape_type": scalar},
        ),
        max_size=3,
    ),
    extra=st.dictionaries(
        st.sampled_from(["imageHeight", "imageWidth", "flags", "version", "imageData"]),
        json_value,
    ),
)
def test_random_documents_read_as_with_the_standard_library(tmp_path, shapes, extra) -> None:
    doc = {"shapes": shapes, "imagePath": "a.png", **extra}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    # repr: every field, ints apart from floats, -0.0 apart from 0.0
    assert repr(_read(path)) == repr(_reference_read(path))


# --- JSON out: coco_bytes writes what json.dumps writes ----------------------------------------

out_scalar = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-2000, 2000).map(lambda v: round(v, 2)),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.sampled_from(["image-001.png", "2e-5.png", "v0.00001", "caf\u00e9", "\x7f", "a\nb"]),
)
out_value = st.recursive(
    out_scalar,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


def _dumps_outcome(fn, obj):
    try:
        return fn(obj)
    except (TypeError, ValueError) as e:
        return type(e).__name__


def _reference_bytes(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


@settings(max_examples=400, deadline=None)
@given(obj=out_value)
def test_coco_bytes_is_json_dumps(obj) -> None:
    assert _dumps_outcome(coco_bytes, obj) == _dumps_outcome(_reference_bytes, obj)


@pytest.mark.parametrize(
    "obj",
    [
        {"a": [1e-4, 1e15, -0.0, 0.1, 123.0, 0.00012]},
        {"a": 1e-5},  # json: 1e-05, orjson: 0.00001
        {"a": [3e-7, 5e-324]},
        {"a": 1e16},
        {"a": 1.5e300},
        {"a": float("nan")},
        {"a": float("inf")},
        {"a": np.float64(1.5)},
        {1: 2},
        {"a": 2**64},
        {"a": (1, 2)},
        {"k\u00e9": "\u2028"},
    ],
)
def test_coco_bytes_on_edge_values(obj) -> None:
    assert _dumps_outcome(coco_bytes, obj) == _dumps_outcome(_reference_bytes, obj)


# --- the image check: a JPEG decoded at 1/8 scale fails exactly where a full decode does --------


def _jpeg(**kw) -> bytes:
    rng = np.random.default_rng(3)
    small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((160, 120))
    if kw.pop("grey", False):
        im = im.convert("L")
    if "exif" in kw:
        exif = Image.Exif()
        exif.update(kw.pop("exif"))
        kw["exif"] = exif.tobytes()
    buf = io.BytesIO()
    im.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _outcome(fn, data):
    try:
        return fn(data)
    except ImageProblem as e:
        return str(e)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"progressive": True},
        {"quality": 95, "subsampling": 0},
        {"grey": True},
        {"exif": {0x0112: 6}},  # rotated: width and height swap
    ],
)
def test_jpeg_check_fails_exactly_where_a_full_decode_fails(kw) -> None:
    data = _jpeg(**kw)
    assert image_size(data) == _ref_image_size(data)
    rng = np.random.default_rng(4)
    cuts = sorted({1, 2, 3, 20, len(data) - 1, len(data) - 2, *rng.integers(4, len(data), 40)})
    for cut in cuts:
        assert _outcome(image_size, data[:cut]) == _outcome(_ref_image_size, data[:cut]), cut
    for _ in range(60):
        flipped = bytearray(data)
        pos = int(rng.integers(0, len(data)))
        flipped[pos] ^= int(rng.integers(1, 256))
        flipped = bytes(flipped)
        assert _outcome(image_size, flipped) == _outcome(_ref_image_size, flipped), pos


def test_tiny_jpeg_is_checked_too() -> None:
    buf = io.BytesIO()
    # the smallest size read (sperm_d2.image_io.MIN_IMAGE_SIDE): 2x2 px at libjpeg's 1/8 scale
    Image.new("RGB", (17, 16), (10, 20, 30)).save(buf, format="JPEG")
    data = buf.getvalue()
    assert image_size(data) == (17, 16, "jpeg")
    assert _outcome(image_size, data[:-30]) == _outcome(_ref_image_size, data[:-30])


def test_jpeg_check_falls_back_to_a_full_decode(monkeypatch) -> None:
    """A JPEG that libjpeg cannot decode scaled (a lossless one) is judged by the full decode."""
    from PIL import JpegImagePlugin

    calls = []

    def refuse(self, mode, size):
        calls.append(size)
        raise OSError("scaling not supported")

    data = _jpeg()
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", refuse)
    assert image_size(data) == _ref_image_size(data) == (160, 120, "jpeg") and calls
    assert _outcome(image_size, data[:-50]) == _outcome(_ref_image_size, data[:-50])


# --- end to end: prepare_dataset's COCO bytes are json.dumps's ---------------------------------


def _real_like_file(path: Path, i: int, width: int = 320, height: int = 256) -> None:
    rng = np.random.default_rng(100 + i)
    img = rng.integers(120, 200, (height // 8, width // 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).resize((width, height)).save(buf, format="JPEG")
    shapes = []
    for g in range(4):
        c = rng.uniform([-10, 10], [width, height - 10]) if g == 0 else rng.uniform(20, 200, 2)
        for part in range(int(rng.integers(1, 5))):
            t = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(6, 14))))
            r = rng.uniform(6, 18)
            pts = np.vstack([c, c + r * np.stack([np.cos(t), 0.6 * np.sin(t)], 1)])
            shapes.append(
                {
                    "label": ["normal", "tapered"][g % 2],
                    "points": pts.tolist(),
                    "group_id": g,
                    "shape_type": "polygon",
                    "flags": {},
                }
            )
    doc = {
        "version": "5.2.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": f"r{i}.jpg",
        "imageData": base64.b64encode(buf.getvalue()).decode(),
        "imageHeight": height,
        "imageWidth": width,
    }
    path.write_text(json.dumps(doc, indent=2))


def test_prepare_writes_what_the_standard_library_writes(tmp_path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        _real_like_file(src / f"r{i}.json", i)
    out = tmp_path / "out"
    report = prepare_dataset(src, out, LM, ratios=(0.5, 0.5))
    assert report["files"]["converted"] == 6
    ctx = ConvertContext(src, out, LM)
    refs = {}
    for p in sorted(src.glob("*.json")):
        doc = read_labelme_json(p)
        refs[p.name] = _ref_instances(doc, doc.width, doc.height, p.name)
        _results_equal(convert_labelme_file(p, ctx), refs[p.name])
    manifest = json.loads((out / ".prepare_data_manifest.json").read_text())["files"]
    n_images = 0
    for split in ("train", "val"):
        data = (out / "annotations" / f"{split}.json").read_bytes()
        coco = json.loads(data)
        assert data == _reference_bytes(coco)  # orjson wrote exactly json.dumps's bytes
        assert manifest[f"annotations/{split}.json"] == hashlib.sha256(data).hexdigest()
        for im in coco["images"]:
            n_images += 1
            image = out / im["file_name"]
            assert manifest[im["file_name"]] == hashlib.sha256(image.read_bytes()).hexdigest()
            anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
            ref = refs[im["labelme"]].instances
            assert [a["segmentation"] for a in anns] == [r["segmentation"] for r in ref]
            assert [(a["area"], a["bbox"]) for a in anns] == [(r["area"], r["bbox"]) for r in ref]
    assert n_images == 6 and sum(len(r.instances) for r in refs.values()) >= 18
