"""Every shape type labelme and X-AnyLabeling write becomes a head outline or refuses its image:
4-corner rectangles, rotated boxes, ``mask`` shapes, self-intersecting polygons; points, lines
and unknown types of a class never leave the image in the dataset with that head as background.
"""

import base64
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sperm_d2.data.balance import _outlines
from sperm_d2.data.convert import ConvertContext, convert_labelme_file
from sperm_d2.data.labelme_io import LabelmeError, read_labelme_json, write_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import prepare_dataset
from sperm_d2.data.shapes import ShapeProblem, mask_outlines
from sperm_d2.data.synthetic_io import make_synthetic_dataset

from .conftest import REPO

LM = LabelMap.load(REPO / "configs/labels/default.yaml")
H, W = 40, 60


def _shape(label, pts, shape_type="polygon", **extra) -> dict:
    return {"label": label, "points": pts, "group_id": None, "shape_type": shape_type, **extra}


def _png_b64(mask: np.ndarray, mode: str = "L") -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).convert(mode).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _ellipse_mask(h: int = 11, w: int = 16) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 20, 0, 360, 1, -1)
    return m


def _mask_shape(mask: np.ndarray, x0: int, y0: int, label="good", **extra) -> dict:
    """A labelme >= 5.3 mask shape: box corners and the mask's PNG, as labelme writes it."""
    h, w = mask.shape
    pts = [[x0, y0], [x0 + w - 1, y0 + h - 1]]
    return _shape(label, pts, "mask", mask=_png_b64(mask), **extra)


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "in"
    r.mkdir()
    cv2.imwrite(str(r / "a.png"), np.full((H, W, 3), 180, np.uint8))
    return r


def _convert(root: Path, shapes: list[dict], name: str = "a.json", lm: LabelMap = LM):
    doc = {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": "a.png",
        "imageData": None,
        "imageHeight": H,
        "imageWidth": W,
    }
    (root / name).write_text(json.dumps(doc))
    return convert_labelme_file(root / name, ConvertContext(root, root.parent / "out", lm))


def _one(res) -> dict:
    assert res.ok, [str(p) for p in res.problems]
    (inst,) = res.instances
    return inst


# --- converted -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "corners",
    [
        [[10, 10], [20, 10], [20, 20], [10, 20]],  # labelme >= 5.3: the 4 corners in turn
        [[10, 10], [20, 20], [20, 10], [10, 20]],  # any order is the same box, not a bow-tie
        [[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]],  # closed ring
    ],
)
def test_four_corner_rectangle_is_its_box(root, corners) -> None:
    inst = _one(_convert(root, [_shape("good", corners, "rectangle")]))
    assert inst["area"] == 100 and inst["bbox"] == [10, 10, 10, 10]


def test_rotated_box_is_its_four_corners(root) -> None:
    diamond = [[30, 5], [40, 15], [30, 25], [20, 15]]  # a square of side 10 * sqrt(2), turned 45
    inst = _one(_convert(root, [_shape("bad", diamond, "rotation", direction=0.785)]))
    assert inst["class"] == "bad" and abs(inst["area"] - 200) <= 2
    assert len(inst["segmentation"][0]) == 8


@pytest.mark.parametrize("mode", ["L", "1", "RGB", "RGBA", "P"])
def test_mask_shape_is_outlined_in_image_coordinates(root, mode) -> None:
    mask = _ellipse_mask()
    shape = _mask_shape(mask, 7, 9)
    shape["mask"] = _png_b64(mask * (255 if mode != "L" else 1), mode)
    inst = _one(_convert(root, [shape]))
    assert inst["area"] == mask.sum()  # outlined along pixel edges: exactly its pixels
    ys, xs = np.nonzero(mask)
    assert inst["bbox"] == [7 + xs.min(), 9 + ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]


def test_mask_of_two_pieces_is_one_instance_and_partly_outside_is_clipped(root) -> None:
    mask = np.zeros((8, 12), np.uint8)
    mask[1:4, 1:4] = 1
    mask[5:8, 6:12] = 1
    inst = _one(_convert(root, [_mask_shape(mask, 0, 0)]))
    assert inst["area"] == 27 and len(inst["segmentation"]) == 2
    res = _convert(root, [_mask_shape(mask, W - 9, 0)])  # 3 columns of the right piece outside
    assert _one(res)["area"] == 27 - 9
    assert [p.kind for p in res.problems] == ["clipped"]


def test_self_intersecting_outline_counts_by_its_filled_area(root) -> None:
    bow_tie = [[10, 10], [30, 20], [30, 10], [10, 20]]  # shoelace area 0, two lobes of 50 px
    inst = _one(_convert(root, [_shape("good", bow_tie)]))
    assert abs(inst["area"] - 100) <= 2 and inst["bbox"][2] == 20
    figure8 = [[10, 10], [20, 20], [30, 10], [30, 20], [20, 10], [10, 20]]  # loops both ways
    assert _one(_convert(root, [_shape("good", figure8)]))["area"] > 0


def test_only_a_shape_covering_no_pixel_is_dropped(root) -> None:
    res = _convert(root, [_shape("good", [[1, 1], [5, 5], [9, 9]]), _shape("bad", [[1, 1]] * 4)])
    assert res.ok and res.instances == []
    lines = [str(p) for p in res.problems]
    assert [p.kind for p in res.problems] == ["zero_area", "zero_area"]
    assert "shape 0 ('good') covers no pixel" in lines[0]
    empty = _convert(root, [_mask_shape(np.zeros((5, 5), np.uint8), 3, 3)])
    assert empty.ok and [p.kind for p in empty.problems] == ["zero_area"]


# --- refused -------------------------------------------------------------------------------


def _bad_mask(**change) -> dict:
    return {**_mask_shape(_ellipse_mask(), 5, 5), **change}


REFUSED = [
    ("point", _shape("good", [[3, 3]], "point"), "a point"),
    ("points", _shape("good", [[3, 3], [8, 8]], "points"), "points mark"),
    ("line", _shape("good", [[3, 3], [9, 9]], "line"), "not a closed outline"),
    ("linestrip", _shape("good", [[3, 3], [9, 9], [9, 3]], "linestrip"), "not a closed outline"),
    ("cuboid", _shape("good", [[3, 3], [9, 9], [9, 3], [3, 9]], "cuboid"), "outline shape types"),
    ("rectangle_3", _shape("good", [[3, 3], [9, 9], [9, 3]], "rectangle"), "2 or 4 corners"),
    ("rotation_5", _shape("good", [[3, 3], [9, 9], [9, 3], [3, 9], [5, 5]], "rotation"), "4 c"),
    ("mask_no_data", _bad_mask(mask=None), "without its 'mask' data"),
    ("mask_not_base64", _bad_mask(mask="@@@"), "not valid base64"),
    ("mask_not_png", _bad_mask(mask=base64.b64encode(b"nope").decode()), "not an image"),
    ("mask_wrong_size", _bad_mask(points=[[5, 5], [40, 30]]), "where does it go"),
    ("mask_one_corner", _bad_mask(points=[[5, 5]]), "2 corners"),
]


@pytest.mark.parametrize("case, shape, why", REFUSED, ids=[c[0] for c in REFUSED])
def test_labelled_shape_without_outline_refuses_the_image(root, case, shape, why) -> None:
    square = _shape("bad", [[30, 10], [40, 10], [40, 20], [30, 20]])
    res = _convert(root, [square, shape, dict(shape, label="normal")])
    assert not res.ok and res.instances == []
    (problem,) = res.problems  # one line for the file, however many such shapes
    line = str(problem)
    assert (problem.level, problem.kind, problem.file) == ("error", "unconvertible_shape", "a.json")
    assert line.startswith("ERROR a.json: shape 1 ('good', shape_type ") and "\n" not in line
    assert why in line and "skipped" in line and "1 more" in line


@pytest.mark.parametrize(
    "labels, label, cls",
    [
        ("sperm_parsing_parts.yaml", "tail", "tail"),
        ("sperm_parsing_parts.yaml", "midpiece", "midpiece"),
        ("sperm_parsing_heads.yaml", "nucleus", "head"),
        ("default.yaml", "normal", "good"),
    ],
)
def test_refusal_names_the_class_drawn_without_an_outline(root, labels, label, cls) -> None:
    """A tail drawn as a line strip under the parts map is a tail without an outline, not a head
    (before: every such shape was "a head without an outline")."""
    square = _shape(label, [[30, 10], [40, 10], [40, 20], [30, 20]], group_id=1)
    line = _shape(label, [[3, 3], [9, 9], [20, 9]], "linestrip", group_id=1)
    res = _convert(root, [square, line], lm=LabelMap.load(REPO / "configs/labels" / labels))
    (problem,) = res.problems
    assert not res.ok and problem.kind == "unconvertible_shape"
    assert problem.message == (
        f"shape 1 ({label!r}, shape_type 'linestrip'): a line strip is not a closed outline "
        "(outline shape types: polygon, rectangle, rotation, circle, mask); an annotated "
        f"{cls} without an outline (if kept, its pixels would read as background): the image "
        "is skipped"
    )


def test_shape_of_an_ignored_label_stays_ignored(root) -> None:
    square = _shape("good", [[30, 10], [40, 10], [40, 20], [30, 20]])
    res = _convert(
        root, [square, _shape("non_sperm", [[3, 3]], "point"), _bad_mask(label="debris", mask=None)]
    )
    assert res.ok and len(res.instances) == 1 and res.problems == []
    assert res.ignored_labels == {"non_sperm": 1, "debris": 1}


def test_refused_image_is_in_no_split(tmp_path) -> None:
    src = make_synthetic_dataset(tmp_path / "syn", 6, 64, seed=2)
    for name, extra in [
        ("syn_00000.json", _shape("normal", [[5, 5]], "point")),
        ("syn_00001.json", _bad_mask(label="normal", mask=None)),
        ("syn_00002.json", _mask_shape(_ellipse_mask(), 4, 4, label="normal")),  # converted
    ]:
        doc = json.loads((src / name).read_text())
        doc["shapes"].append(extra)
        (src / name).write_text(json.dumps(doc))
    report = prepare_dataset(src, tmp_path / "root", LM, ratios=(0.5, 0.5))
    assert report["files"] == {"found": 6, "converted": 4, "skipped": 2}
    assert report["problems"]["counts"]["error"] == {"unconvertible_shape": 2}
    names = [
        img["labelme"]
        for split in ("train", "val")
        for img in json.loads((tmp_path / f"root/annotations/{split}.json").read_text())["images"]
    ]
    assert sorted(names) == [f"syn_0000{i}.json" for i in range(2, 6)]


# --- labelme I/O and the balancing copies --------------------------------------------------


def test_mask_data_is_read_and_written_back(root) -> None:
    shape = _mask_shape(_ellipse_mask(), 5, 5)
    _convert(root, [shape, _shape("good", [[1, 1], [9, 1], [9, 9]], mask=None)])
    doc = read_labelme_json(root / "a.json")
    assert doc.shapes[0].mask == shape["mask"] and doc.shapes[1].mask is None
    write_labelme_json(root / "b.json", root / "a.png", H, W, doc.shapes)
    again = read_labelme_json(root / "b.json")
    assert [s.mask for s in again.shapes] == [s.mask for s in doc.shapes]


def test_mask_outlines_match_their_pixels() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):  # random masks: pieces touching at corners, holes (filled)
        mask = (rng.random((9, 13)) < 0.4).astype(np.uint8)
        polys = mask_outlines(_png_b64(mask), [[2, 3], [14, 11]])
        rle = mask_utils.merge(mask_utils.frPyObjects([p.ravel().tolist() for p in polys], 12, 16))
        filled = mask_utils.decode(rle)
        assert filled.sum() == filled[3:12, 2:15].sum()  # nothing outside the box
        assert (filled[3:12, 2:15] >= mask).all()  # every pixel of the mask covered
    ellipse = _ellipse_mask()
    polys = mask_outlines(_png_b64(ellipse), [[0, 0], [15, 10]])
    rle = mask_utils.merge(mask_utils.frPyObjects([p.ravel().tolist() for p in polys], 11, 16))
    assert (mask_utils.decode(rle) == ellipse).all()  # no hole: exactly its pixels
    with pytest.raises(ShapeProblem, match="where does it go"):
        mask_outlines(_png_b64(np.ones((3, 3))), [[0, 0], [9, 9]])


def test_balance_copies_carry_mask_pieces_as_one_group_and_refuse_points(root) -> None:
    mask = np.zeros((8, 12), np.uint8)
    mask[1:4, 1:4] = 1
    mask[5:8, 6:12] = 1
    _convert(root, [_shape("good", [[1, 1], [9, 1], [9, 9]]), _mask_shape(mask, 20, 5)])
    keep = _outlines(read_labelme_json(root / "a.json"), LM)
    assert [gid for _, gid, _ in keep] == [None, 0, 0]
    _convert(root, [_shape("non_sperm", [[1, 1]], "point")])
    assert _outlines(read_labelme_json(root / "a.json"), LM) == []
    _convert(root, [_shape("good", [[1, 1]], "point")])
    with pytest.raises(LabelmeError, match="shape 0 .'good', shape_type 'point'"):
        _outlines(read_labelme_json(root / "a.json"), LM)
