"""One labelme file -> COCO instances: every validation case, group_id merging, mask stats."""

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sperm_d2.data.convert import ConvertContext, convert_labelme_file
from sperm_d2.data.labels import LabelMap

from .conftest import REPO

LM = LabelMap.load(REPO / "configs/labels/default.yaml")
H, W = 40, 60


def _image(path: Path, h: int = H, w: int = W) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".png", np.full((h, w, 3), 180, np.uint8))
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


def _poly(label, pts, group_id=None, shape_type="polygon") -> dict:
    return {
        "label": label,
        "points": pts,
        "group_id": group_id,
        "shape_type": shape_type,
        "flags": {},
    }


SQUARE = [[10, 10], [20, 10], [20, 20], [10, 20]]


def _write(root: Path, shapes, image="a.png", name="a.json", **extra) -> Path:
    doc = {
        "version": "5.2.1",
        "imagePath": image,
        "imageData": None,
        "shapes": shapes,
        "imageHeight": H,
        "imageWidth": W,
        "flags": {},
    }
    doc.update(extra)
    p = root / name
    p.write_text(json.dumps(doc))
    return p


def _convert(root: Path, json_path: Path, out: Path | None = None):
    out = out or root.parent / "out"
    return convert_labelme_file(json_path, ConvertContext(root, out, LM))


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "in"
    _image(r / "a.png")
    return r


def _kinds(res) -> list[tuple[str, str]]:
    return [(p.level, p.kind) for p in res.problems]


def test_clean_file(root) -> None:
    res = _convert(root, _write(root, [_poly("Good Morphological Quality", SQUARE)]))
    assert res.ok and res.problems == [] and (res.width, res.height) == (W, H)
    (inst,) = res.instances
    assert inst["category_id"] == 1 and inst["bbox"] == [10, 10, 10, 10] and inst["area"] == 100
    assert res.file_name == "../in/a.png"


def test_group_id_merges_shapes_of_one_class(root) -> None:
    other = [[30, 10], [40, 10], [40, 20], [30, 20]]
    shapes = [
        _poly("bad", SQUARE, 1),
        _poly("tapered", other, 1),
        _poly("bad", other, None),
        _poly("good", SQUARE, 1),
    ]
    res = _convert(root, _write(root, shapes))
    assert res.ok
    by_cls = sorted(
        (i["class"], len(i["segmentation"]), i["area"], i["bbox"]) for i in res.instances
    )
    assert by_cls == [
        ("bad", 1, 100.0, [30, 10, 10, 10]),  # no group_id: stands alone
        ("bad", 2, 200.0, [10, 10, 30, 10]),  # group 1: both polygons, union bbox
        ("good", 1, 100.0, [10, 10, 10, 10]),  # same group id but another class
    ]


def test_rectangle_and_circle_become_polygons(root) -> None:
    shapes = [
        _poly("good", [[20, 20], [10, 10]], shape_type="rectangle"),
        _poly("bad", [[40, 20], [45, 20]], shape_type="circle"),
    ]
    res = _convert(root, _write(root, shapes))
    rect, circ = res.instances
    assert rect["bbox"] == [10, 10, 10, 10]
    assert abs(circ["area"] - np.pi * 25) < 12 and circ["bbox"][2] == pytest.approx(10, abs=1)


@pytest.mark.parametrize(
    "case, kind",
    [
        ("invalid_json", "invalid_json"),
        ("missing_image", "missing_image"),
        ("unreadable_image", "unreadable_image"),
        ("size_mismatch", "size_mismatch"),
        ("unknown_label", "unknown_label"),
        ("path_escape", "path_escape"),
    ],
)
def test_errors_skip_the_file_with_one_line(root, case, kind) -> None:
    shapes = [_poly("good", SQUARE)]
    if case == "invalid_json":
        p = root / "a.json"
        p.write_text('{"shapes": [')
    elif case == "missing_image":
        p = _write(root, shapes, image="nope.png")
    elif case == "unreadable_image":
        (root / "broken.png").write_bytes(b"not an image")
        p = _write(root, shapes, image="broken.png")
    elif case == "size_mismatch":
        p = _write(root, shapes, imageHeight=H + 1)
    elif case == "unknown_label":
        p = _write(root, shapes + [_poly("banana", SQUARE)])
    else:
        _image(root.parent / "outside.png")
        p = _write(root, shapes, image="../outside.png")
    res = _convert(root, p)
    assert not res.ok and res.instances == []
    (problem,) = res.problems
    assert (problem.level, problem.kind) == ("error", kind)
    assert (
        problem.file == "a.json" and "\n" not in str(problem) and str(problem).count("a.json") >= 1
    )


def test_warnings_keep_the_file(root) -> None:
    shapes = [
        _poly("good", SQUARE),
        _poly("bad", [[1, 1], [5, 5]]),  # too few points
        _poly("bad", [[1, 1], [5, 5], [9, 9]]),  # collinear: covers no pixel
        _poly("bad", [[50, 30], [70, 30], [70, 50], [50, 50]]),  # partly outside: clipped
        _poly("non_sperm", SQUARE),  # mapped to null: ignored, not a problem
        _poly("debris", [[3, 3]], shape_type="point"),  # so is a point of an ignored label
    ]
    res = _convert(root, _write(root, shapes))
    assert res.ok and len(res.instances) == 2
    assert sorted(_kinds(res)) == [
        ("warning", "clipped"),
        ("warning", "too_few_points"),
        ("warning", "zero_area"),
    ]
    clipped = res.instances[1]
    assert clipped["bbox"] == [50, 30, 10, 10] and clipped["area"] == 100
    assert res.ignored_labels == {"non_sperm": 1, "debris": 1}


def test_point_or_line_of_a_class_skips_the_file(root) -> None:
    """A head marked by a point or a line has no outline: kept, it would be background."""
    shapes = [_poly("good", SQUARE), _poly("good", [[3, 3], [9, 9]], shape_type="line")]
    res = _convert(root, _write(root, shapes))
    assert not res.ok and _kinds(res) == [("error", "unconvertible_shape")]
    assert "shape 1 ('good', shape_type 'line')" in str(res.problems[0])


def test_embedded_image_data_is_returned_to_write(tmp_path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    data = _image(tmp_path / "elsewhere" / "e.png")
    p = _write(
        root,
        [_poly("good", SQUARE)],
        image="gone.png",
        imageData=base64.b64encode(data).decode(),
        name="sub_e.json",
    )
    before = p.read_bytes()
    res = _convert(root, p, out=tmp_path / "out")
    assert res.ok and res.file_name == "images/sub_e.png"
    assert res.embedded == data  # not re-encoded; prepare_dataset writes it with the splits
    assert not (tmp_path / "out").exists()  # converting writes nothing
    assert p.read_bytes() == before  # input untouched


def _picture(seed: int, h: int = H, w: int = W, ext: str = ".png") -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    return cv2.imencode(ext, image)[1].tobytes()


@pytest.mark.parametrize("embedded_size", [(H, W), (W, H)])
def test_the_embedded_image_is_used_when_it_is_another_picture(tmp_path, embedded_size) -> None:
    """labelme shows imageData when a file has it: the outlines were drawn on that image, so
    when the file on disk is another picture (or another size) the embedded one is used."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.png").write_bytes(_picture(0))
    embedded = _picture(1, *embedded_size)
    size = {"imageHeight": embedded_size[0], "imageWidth": embedded_size[1]}  # labelme's: its
    p = _write(root, [_poly("good", SQUARE)], imageData=base64.b64encode(embedded).decode(), **size)
    res = _convert(root, p, out=tmp_path / "out")
    assert res.ok and res.file_name == "images/a.png" and res.embedded == embedded
    (kind,) = [k for k in _kinds(res) if k[1] == "embedded_image_differs"]
    assert kind[0] == "warning"


def test_a_reencoded_embedded_copy_of_the_image_keeps_the_file_on_disk(tmp_path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.png").write_bytes(_picture(0))
    jpeg = cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(_picture(0), np.uint8), 1))[1]
    p = _write(root, [_poly("good", SQUARE)], imageData=base64.b64encode(jpeg).decode())
    res = _convert(root, p, out=tmp_path / "out")
    assert res.ok and res.file_name == "../in/a.png" and res.embedded is None
    assert not [k for k in _kinds(res) if k[1] == "embedded_image_differs"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    polys=st.lists(
        st.lists(
            st.tuples(st.floats(-50, 120, allow_nan=False), st.floats(-50, 120, allow_nan=False)),
            min_size=0,
            max_size=12,
        ),
        min_size=1,
        max_size=4,
    ),
    groups=st.lists(st.one_of(st.none(), st.integers(0, 2)), min_size=4, max_size=4),
)
def test_random_polygons_never_crash_and_stay_inside(tmp_path_factory, polys, groups) -> None:
    root = tmp_path_factory.mktemp("prop")
    _image(root / "a.png")
    shapes = [_poly("bad", [list(p) for p in pts], groups[i]) for i, pts in enumerate(polys)]
    res = _convert(root, _write(root, shapes))
    assert res.ok
    for inst in res.instances:
        x, y, w, h = inst["bbox"]
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H and inst["area"] > 0
        for seg in inst["segmentation"]:
            assert len(seg) >= 6 and all(0 <= v <= max(W, H) for v in seg)
