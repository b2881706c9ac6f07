"""Offline class balancing: counts reach the target, polygons follow the image, no split leak."""

import json

import cv2
import numpy as np
import pytest

from sperm_d2.data.balance import augment_pair, balance_labelme
from sperm_d2.data.labelme_io import write_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import prepare_dataset
from sperm_d2.data.synthetic import render_scene_detailed
from sperm_d2.errors import InputError

from .conftest import REPO

LM = LabelMap.load(REPO / "configs/labels/default.yaml")


def _raster(poly, h, w):
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round((poly - 0.5) * 16).astype(np.int32)], 1, shift=4)
    return m.astype(bool)


def _one_class_scenes(src, good: int, bad: int, heads: int):
    """``good`` good-only then ``bad`` bad-only labelme scenes (``s<i>.png/json``) in ``src``."""
    src.mkdir()
    for i in range(good + bad):
        img, found = render_scene_detailed(i, 96, 96, num_heads=heads)
        label = "normal" if i < good else "amorphous"
        cv2.imwrite(str(src / f"s{i}.png"), img)
        shapes = [{"label": label, "points": p.tolist()} for _, _, p in found]
        write_labelme_json(src / f"s{i}.json", src / f"s{i}.png", 96, 96, shapes)
    return src


def test_augment_pair_moves_polygons_with_pixels() -> None:
    h, w = 70, 100
    poly = np.array([[20, 10], [60, 15], [55, 50], [25, 45]], float)
    img = np.full((h, w, 3), 220, np.uint8)
    img[_raster(poly, h, w)] = (40, 40, 40)
    for seed in range(8):
        out, (p,) = augment_pair(img, [poly], np.random.default_rng(seed))
        dark = out.mean(axis=2) < 130
        got = _raster(p, *out.shape[:2])
        assert (dark & got).sum() / (dark | got).sum() > 0.85


def test_balance_then_prepare_keeps_copies_with_their_source(tmp_path) -> None:
    src = _one_class_scenes(tmp_path / "in", good=2, bad=6, heads=2)
    before = sorted(p.name for p in src.iterdir())
    counts = balance_labelme(src, tmp_path / "bal", LM, seed=0)
    assert counts["before"] == {"good": 2, "bad": 6} and counts["added"] == {"good": 4, "bad": 0}
    assert sorted(p.name for p in src.iterdir()) == before
    copies = sorted((tmp_path / "bal/augmented").glob("*.json"))
    assert len(copies) == 4
    assert json.loads(copies[0].read_text())["flags"]["augmented_from"] == "s0.json"
    report = prepare_dataset(
        tmp_path / "bal", tmp_path / "root", LM, ratios=(0.5, 0.5), seed=0, image_roots=[src]
    )
    assert report["files"]["skipped"] == 0 and report["total"]["images"] == 12
    splits = {}
    for name in ("train", "val"):
        coco = json.loads((tmp_path / f"root/annotations/{name}.json").read_text())
        for img in coco["images"]:
            splits[img["labelme"]] = name
    for c in copies:
        source = json.loads(c.read_text())["flags"]["augmented_from"]
        assert splits[f"augmented/{c.name}"] == splits[source]
    escaped = prepare_dataset(tmp_path / "bal", tmp_path / "root2", LM, ratios=(1.0,))
    assert escaped["problems"]["counts"]["error"] == {"path_escape": 8}


def test_an_image_path_outside_the_input_folder_is_skipped_not_read(tmp_path) -> None:
    """balance_data.py followed an absolute imagePath out of its input (prepare_data.py refused
    it): a labelme file could copy any readable image into the output."""
    src, elsewhere = tmp_path / "in", tmp_path / "private"
    src.mkdir()
    elsewhere.mkdir()
    img, heads = render_scene_detailed(0, 96, 96, num_heads=1)
    cv2.imwrite(str(elsewhere / "secret.png"), img)
    shapes = [{"label": "normal", "points": p.tolist()} for _, _, p in heads]
    write_labelme_json(src / "a.json", elsewhere / "secret.png", 96, 96, shapes)
    doc = json.loads((src / "a.json").read_text())
    doc["imagePath"] = str(elsewhere / "secret.png")  # absolute, as a hostile file gives it
    (src / "a.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="none of 1 labelme file") as refused:
        balance_labelme(src, tmp_path / "bal", LM, seed=0)  # its one file skipped: nothing left
    [line] = refused.value.problems
    assert "resolves outside the input folder" in line
    assert not (tmp_path / "bal").exists()


def test_the_copies_cap_is_for_a_given_target_not_the_datas_own(tmp_path, monkeypatch) -> None:
    """Without --target the goal is the largest class: however imbalanced the data, it is
    balanced; the cap on copies per image refuses only a --target the user typed."""
    import sperm_d2.data.balance as balance

    src = _one_class_scenes(tmp_path / "in", good=1, bad=3, heads=1)
    monkeypatch.setattr(balance, "MAX_COPIES_PER_IMAGE", 1)  # 3 > 1 x (1 + 1)
    counts = balance_labelme(src, tmp_path / "bal", LM, seed=0)
    assert counts["added"] == {"good": 2, "bad": 0}
    with pytest.raises(InputError, match="--target 3"):
        balance_labelme(src, tmp_path / "bal2", LM, seed=0, target=3)
