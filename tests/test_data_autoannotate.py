"""Auto-annotation of single-cell crops, checked on generated crops with known outlines."""

import json
from dataclasses import replace

import cv2
import numpy as np

from sperm_d2.data.autoannotate import annotate_class_folders, segment_head
from sperm_d2.data.contact_sheet import write_contact_sheets
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import prepare_dataset
from sperm_d2.data.synthetic import draw_scene, sample_scene

from .conftest import REPO

LM = LabelMap.load(REPO / "configs/labels/default.yaml")
S = 128


def _crop(seed: int, heads: int = 1):
    """A crop with one head at the centre (plus distractors), and its true polygon."""
    rng = np.random.default_rng(seed)
    spec = sample_scene(rng, S, S, heads)
    head = replace(spec.heads[0], cx=S / 2 + rng.normal(0, 3), cy=S / 2 + rng.normal(0, 3))
    spec = replace(spec, heads=(head,), num_distractors=2)
    return draw_scene(spec, rng), head.polygon()


def _mask(poly: np.ndarray) -> np.ndarray:
    m = np.zeros((S, S), np.uint8)
    cv2.fillPoly(m, [np.round((poly - 0.5) * 16).astype(np.int32)], 1, shift=4)
    return m.astype(bool)


def test_segment_head_matches_generated_outlines() -> None:
    ious = []
    for seed in range(24):
        img, truth = _crop(seed)
        poly = segment_head(img)
        if poly is None:
            ious.append(0.0)
            continue
        a, b = _mask(poly), _mask(truth)
        ious.append((a & b).sum() / (a | b).sum())
    # Heads here are only ~20-35 px long: a one-pixel halo alone costs ~0.15 IoU.
    assert np.mean(np.array(ious) > 0.65) >= 0.9 and np.median(ious) > 0.75, np.round(ious, 2)


def test_empty_crop_has_no_head() -> None:
    img = np.full((S, S, 3), (215, 195, 222), np.uint8)
    img = (img + np.random.default_rng(0).normal(0, 3, img.shape)).clip(0, 255).astype(np.uint8)
    assert segment_head(img) is None


def test_class_folders_to_labelme_and_coco(tmp_path) -> None:
    src = tmp_path / "crops"
    for folder, seeds in (("01_Normal", (0, 1, 2)), ("non_sperm", (3,)), ("mystery", (4,))):
        (src / folder).mkdir(parents=True)
        for s in seeds:
            cv2.imwrite(str(src / folder / f"image_{s:03d}.bmp"), _crop(s)[0])
    cv2.imwrite(str(src / "01_Normal" / "blank.png"), np.full((S, S, 3), 210, np.uint8))
    problems = annotate_class_folders(src, tmp_path / "lm", LM)
    assert sorted((p.kind, p.file) for p in problems) == [
        ("no_head_found", "01_Normal/blank.png"),
        ("unknown_label", "mystery"),
    ]
    doc = json.loads((tmp_path / "lm/01_Normal/image_000.json").read_text())
    assert doc["imagePath"] == "../../crops/01_Normal/image_000.bmp"
    assert [s["label"] for s in doc["shapes"]] == ["01_Normal"]
    assert json.loads((tmp_path / "lm/non_sperm/image_003.json").read_text())["shapes"] == []
    report = prepare_dataset(src, tmp_path / "root", LM, ratios=(1.0,), from_folders=True)
    assert report["total"]["images"] == 5 and report["total"]["negatives"] == 2
    assert report["total"]["instances"] == {"good": 3, "bad": 0}
    coco = json.loads((tmp_path / "root/annotations/train.json").read_text())
    assert all(i["file_name"].startswith("../crops/") for i in coco["images"])
    assert report["problems"]["counts"]["error"] == {"unknown_label": 1}
    sheets = write_contact_sheets(tmp_path / "lm", tmp_path / "sheet.png", tile=64, per_row=3)
    assert [p.name for p in sheets] == ["sheet_01_Normal.png", "sheet_non_sperm.png"]
    assert cv2.imread(str(sheets[0])).shape == (2 * 64, 3 * 64, 3)  # 4 crops -> 2 rows of 3
