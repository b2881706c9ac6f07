"""Annotated heads that contradict anatomy (no acrosome, a nucleus of 2+ polygons), found from
the polygons alone: the converter warns about them (and keeps them as they are), and
test_parts_parse.py checks that the benchmark's head metrics count them apart."""

import json
from pathlib import Path

import cv2
import numpy as np

from sperm_d2.data.convert import ConvertContext, convert_labelme_file
from sperm_d2.data.label_checks import split_nuclei, split_nucleus_groups
from sperm_d2.data.labels import LabelMap
from sperm_d2.parts.targets import PART_CLASSES

from .conftest import REPO

PARTS_LABELS = REPO / "configs/labels/sperm_parsing_parts.yaml"
HEAD_LABELS = REPO / "configs/labels/sperm_parsing_heads.yaml"

SQUARE = [0, 0, 4, 0, 4, 4, 0, 4]
ACROSOME, NUCLEUS, TAIL = (PART_CLASSES.index(n) for n in ("acrosome", "nucleus", "tail"))


def _ann(gid, category, *polygons):
    return {"group_id": gid, "category_id": category, "segmentation": [list(p) for p in polygons]}


def test_split_nucleus_groups_are_acrosome_less_heads_with_two_nucleus_polygons() -> None:
    anns = [
        _ann(1, ACROSOME, SQUARE),  # a normal head
        _ann(1, NUCLEUS, SQUARE),
        _ann(2, NUCLEUS, SQUARE, SQUARE),  # the acrosome drawn as a second nucleus
        _ann(3, ACROSOME, SQUARE),  # an acrosome: two nucleus polygons are left alone
        _ann(3, NUCLEUS, SQUARE, SQUARE),
        _ann(4, NUCLEUS, SQUARE),  # the two polygons in two annotations
        _ann(4, NUCLEUS, SQUARE),
        _ann(4, TAIL, SQUARE),
        _ann(5, NUCLEUS, SQUARE, [0, 0, 1, 1]),  # a degenerate polygon encloses nothing
        _ann(6, NUCLEUS, SQUARE),  # one nucleus and no acrosome: maybe a real defect
        {"category_id": NUCLEUS, "segmentation": [SQUARE, SQUARE]},  # no group: no sperm
        {**_ann(7, NUCLEUS, SQUARE, SQUARE), "iscrowd": 1},
    ]
    assert split_nucleus_groups(anns, PART_CLASSES) == {2, 4}
    assert split_nucleus_groups(anns, ["head"]) == set()
    assert split_nucleus_groups([], PART_CLASSES) == set()


def test_split_nuclei_counts_the_polygons_and_skips_parts_of_no_sperm() -> None:
    parts = [
        ("nucleus", 2, [SQUARE, SQUARE, SQUARE]),
        ("nucleus", None, [SQUARE, SQUARE]),  # no group: no sperm
        ("nucleus", True, [SQUARE, SQUARE]),  # not a group_id labelme writes
        ("acrosome", 3, [SQUARE]),
        ("nucleus", 3, [SQUARE, SQUARE]),
    ]
    assert split_nuclei(parts) == {2: 3}


def _labelme(tmp_path: Path, shapes: list[tuple[str, int | None]]) -> Path:
    root = tmp_path / "in"
    root.mkdir()
    cv2.imwrite(str(root / "f.png"), np.full((40, 60, 3), 180, np.uint8))
    squares = (
        [[2 + 10 * k, 2], [8 + 10 * k, 2], [8 + 10 * k, 8], [2 + 10 * k, 8]] for k in range(9)
    )
    doc = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [
            {"label": label, "points": pts, "group_id": gid, "shape_type": "polygon", "flags": {}}
            for (label, gid), pts in zip(shapes, squares)
        ],
        "imagePath": "f.png",
        "imageData": None,
        "imageHeight": 40,
        "imageWidth": 60,
    }
    (root / "f.json").write_text(json.dumps(doc))
    return root


def test_converter_warns_about_a_split_nucleus_and_keeps_the_sperm(tmp_path) -> None:
    shapes = [("acrosome", 1), ("nucleus", 1), ("nucleus", 4), ("nucleus", 4), ("tail", 4)]
    root = _labelme(tmp_path, shapes + [("nucleus", None), ("nucleus", None)])
    ctx = ConvertContext(root, tmp_path / "out", LabelMap.load(PARTS_LABELS))
    res = convert_labelme_file(root / "f.json", ctx)
    assert res.ok
    (warning,) = [p for p in res.problems if p.kind == "split_nucleus"]
    assert warning.level == "warning" and warning.file == "f.json"
    assert "group_id 4 (2 nucleus polygons)" in warning.message
    assert "\n" not in warning.message
    # nothing is dropped or changed: both nucleus polygons of sperm 4 stay its nucleus
    nucleus_4 = [i for i in res.instances if i["class"] == "nucleus" and i.get("group_id") == 4]
    assert len(nucleus_4) == 1 and len(nucleus_4[0]["segmentation"]) == 2


def test_converter_is_silent_on_heads_without_parts(tmp_path) -> None:
    root = _labelme(tmp_path, [("nucleus", 4), ("nucleus", 4)])
    ctx = ConvertContext(root, tmp_path / "out", LabelMap.load(HEAD_LABELS))
    res = convert_labelme_file(root / "f.json", ctx)
    assert res.ok and not [p for p in res.problems if p.kind == "split_nucleus"]


def test_converter_warns_once_about_parts_without_a_group_id(tmp_path) -> None:
    """labelme gives a new shape no group_id: under the parts map such a part belongs to no sperm
    (head-part training and metrics leave it out), so the file is kept with one warning line
    naming the shapes; --strict fails on it like on every warning."""
    from sperm_d2.data.prepare import exit_code, prepare_dataset

    shapes = [("acrosome", 1), ("nucleus", 1), ("acrosome", None), ("head", None), ("tail", None)]
    root = _labelme(tmp_path, shapes)
    lm = LabelMap.load(PARTS_LABELS)
    res = convert_labelme_file(root / "f.json", ConvertContext(root, tmp_path / "out", lm))
    assert res.ok and len(res.instances) == 4
    (warning,) = [p for p in res.problems if p.kind == "no_group_id"]
    assert warning.level == "warning" and warning.file == "f.json" and "\n" not in warning.message
    assert warning.message.startswith("shape 2 ('acrosome'), shape 4 ('tail') have no group_id")
    assert "links to no sperm" not in warning.message and "head-part training" in warning.message
    report = prepare_dataset(root, tmp_path / "ds", lm, ratios=(1,))
    assert report["problems"]["counts"]["warning"] == {"no_group_id": 1}
    assert report["ignored_labels"] == {"head": 1}
    assert exit_code(report) == 0 and exit_code(report, strict=True) == 1


def test_one_part_without_a_group_id_is_named_in_the_singular(tmp_path) -> None:
    root = _labelme(tmp_path, [("acrosome", 1), ("nucleus", None)])
    res = convert_labelme_file(
        root / "f.json", ConvertContext(root, tmp_path / "out", LabelMap.load(PARTS_LABELS))
    )
    (warning,) = [p for p in res.problems if p.kind == "no_group_id"]
    assert warning.message.startswith(
        "shape 1 ('nucleus') has no group_id: it links to no sperm (head-part training and "
        "metrics leave it out)"
    )


def test_heads_without_a_group_id_are_no_parts(tmp_path) -> None:
    """Under the heads map (and any map whose classes are not parts) a shape without a group_id
    is a head of its own: no warning."""
    root = _labelme(tmp_path, [("acrosome", None), ("nucleus", None)])
    res = convert_labelme_file(
        root / "f.json", ConvertContext(root, tmp_path / "out", LabelMap.load(HEAD_LABELS))
    )
    assert res.ok and res.problems == []
