"""labelme JSON reading (3.x-5.x quirks, embedded imageData) and atomic writing."""

import base64
import json

import cv2
import numpy as np
import pytest

from sperm_d2.data.labelme_io import LabelmeError, read_labelme_json, write_labelme_json


def _png(path, h=20, w=30) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 200, np.uint8))
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


def test_reads_labelme_3x_without_shape_type_or_size(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    _png(tmp_path / "sub" / "a.png")
    doc = {
        "version": "3.16.7",
        "imagePath": "sub\\a.png",
        "imageData": None,
        "shapes": [{"label": "good", "points": [[1, 1], [5, 1], [5, 5]], "line_color": None}],
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    f = read_labelme_json(tmp_path / "a.json")
    assert f.image_path == tmp_path / "sub" / "a.png" and f.image_path.is_file()
    assert f.shapes[0].shape_type == "polygon" and f.shapes[0].group_id is None
    assert (f.height, f.width) == (None, None)


def test_reads_embedded_image_data(tmp_path) -> None:
    data = _png(tmp_path / "x.png")
    doc = {
        "version": "5.2.1",
        "imagePath": "gone.png",
        "shapes": [],
        "imageData": base64.b64encode(data).decode(),
        "imageHeight": 20,
        "imageWidth": 30,
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    assert read_labelme_json(tmp_path / "a.json").image_data == data


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "invalid JSON"),
        ('{"shapes": "x", "imagePath": "a.png"}', "no 'shapes' list"),
        ('{"shapes": []}', "names no image"),
        ('{"shapes": [{"label": "g", "points": [[1]]}], "imagePath": "a.png"}', "malformed"),
        ('{"shapes": [{"points": []}], "imagePath": "a.png"}', "no text 'label'"),
        ('{"shapes": [], "imagePath": "a.png", "imageData": "@@@"}', "base64"),
    ],
)
def test_malformed_files_give_one_line_errors(tmp_path, text, match) -> None:
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(LabelmeError, match=match) as e:
        read_labelme_json(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_write_then_read_round_trip(tmp_path) -> None:
    img = tmp_path / "images" / "a.png"
    img.parent.mkdir()
    _png(img)
    shapes = [
        {
            "label": "bad",
            "points": [[1, 2], [3, 4.5], [0, 6]],
            "group_id": 3,
            "shape_type": "polygon",
            "flags": {},
        },
        {"label": "good", "points": [[1, 1], [4, 4]], "shape_type": "rectangle"},
    ]
    out = tmp_path / "json" / "a.json"
    write_labelme_json(out, img, 20, 30, shapes)
    raw = json.loads(out.read_text())
    assert raw["imagePath"] == "../images/a.png" and raw["imageData"] is None
    f = read_labelme_json(out)
    assert f.image_path.resolve() == img.resolve() and (f.height, f.width) == (20, 30)
    assert [s.label for s in f.shapes] == ["bad", "good"]
    assert f.shapes[0].points == [[1, 2], [3, 4.5], [0, 6]] and f.shapes[0].group_id == 3
    assert f.shapes[1].shape_type == "rectangle"
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.json"]  # no temp file left
