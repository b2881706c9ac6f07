"""tools/evaluate.py on a registered split holding unreadable images: each is skipped with one
warning, listed with its reason in metrics.json and the printed summary, and left out of every
metric with its annotations (the metrics equal those of a split without it); exit code 1 as
infer.py's when it skipped files; a split whose every image is bad is one line, exit code 2.
The val side (--val-dataset, --val-folders) is listed alike, marked as val, and a file of both
val and test once."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools import mask as mask_util

from sperm_d2.config import setup_cfg
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import prepare_dataset
from sperm_d2.data.synthetic_io import make_synthetic_dataset
from sperm_d2.evaluation.job import run_evaluation
from sperm_d2.inference import SpermPredictor
from sperm_d2.inference.types import ImagePrediction
from sperm_d2.masks import segmentation_to_rle

from .conftest import REPO
from .hostile_inputs import load_tool, run_main

EVALUATE = load_tool("evaluate")
INSTANT = str(REPO / "configs" / "quick_schedules" / "sperm_mask_rcnn_R_50_FPN_instant_test.yaml")
PREFIX = "skiptest"


def _split(root: Path, name: str, image_ids: list[int]) -> Path:
    """A data root beside ``root`` whose val split is ``root``'s cut down to ``image_ids`` and
    their annotations (the same image files: paths are relative to a root's parent)."""
    val = json.loads((root / "annotations" / "val.json").read_text())
    val["images"] = [i for i in val["images"] if i["id"] in image_ids]
    val["annotations"] = [a for a in val["annotations"] if a["image_id"] in image_ids]
    other = root.parent / name
    (other / "annotations").mkdir(parents=True)
    (other / "annotations" / "val.json").write_text(json.dumps(val))
    return other


@pytest.fixture
def data(tmp_path: Path) -> dict:
    """A prepared dataset (``root``) whose val split holds two annotated images, ``good`` and
    ``bad`` (the one each test spoils), and data roots whose val split holds only one of them
    (``good_root``, ``bad_root``)."""
    labelme = make_synthetic_dataset(tmp_path / "labelme", num_images=4, size=96, seed=0)
    root = tmp_path / "data"
    prepare_dataset(
        labelme, root, LabelMap.load(REPO / "configs/labels/default.yaml"), ratios=(1, 1)
    )
    val = json.loads((root / "annotations" / "val.json").read_text())
    images = [i for i in val["images"] if any(a["image_id"] == i["id"] for a in val["annotations"])]
    assert len(images) == len(val["images"]) == 2  # both with heads: AP counts both
    good, bad = images
    yield {
        "root": root,
        "good_root": _split(root, "data_good", [good["id"]]),
        "bad_root": _split(root, "data_bad", [bad["id"]]),
        "good": root / good["file_name"],
        "bad": root / bad["file_name"],
    }
    for name in list(DatasetCatalog.list()):
        if name.startswith(f"{PREFIX}_"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def _opts(root: Path) -> list[str]:
    return ["SPERM.DATA_ROOT", str(root), "SPERM.DATASET_PREFIX", PREFIX]


class OraclePredictor:
    """Predicts each annotated head of an image exactly (its outline and class): every metric is
    perfect on the images it is shown, so a skipped image's heads counted as missed would show."""

    grader = None

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.class_names = tuple(cfg.SPERM.CLASSES)

    def predict_stream(self, items):
        by_file = {
            r["file_name"]: r
            for name in DatasetCatalog.list()
            if name.startswith(f"{PREFIX}_")
            for r in DatasetCatalog.get(name)
        }
        for source, _, image in items:
            anns = by_file[source]["annotations"]
            h, w = image.shape[:2]
            rles = [segmentation_to_rle(a["segmentation"], h, w) for a in anns]
            masks = np.stack([mask_util.decode(r).astype(bool) for r in rles])
            boxes = mask_util.toBbox(rles).astype(np.float32)
            boxes[:, 2:] += boxes[:, :2]  # XYWH -> XYXY
            scores = np.linspace(0.9, 0.8, len(anns), dtype=np.float32)
            classes = np.array([a["category_id"] for a in anns], np.int64)
            yield image, ImagePrediction(
                source, (h, w), boxes, masks, scores, classes, self.class_names
            )


def _oracle_metrics(root: Path, out: Path) -> dict:
    """``run_evaluation`` of the oracle on ``root``'s val split (threshold from the config)."""
    predictor = OraclePredictor(setup_cfg(INSTANT, _opts(root)))
    result, _ = run_evaluation(predictor, out, dataset=f"{PREFIX}_val")
    return result


def _resized(path: Path) -> None:
    image = cv2.imread(str(path))
    cv2.imwrite(str(path), cv2.resize(image, (image.shape[1] + 8, image.shape[0])))


@pytest.mark.parametrize(
    "spoil, reason",
    [(lambda p: p.write_bytes(b""), "empty file"), (_resized, "not the 96x96 px")],
    ids=["empty", "other_size"],
)
def test_skipped_image_leaves_every_metric(data, tmp_path, caplog, spoil, reason) -> None:
    full = _oracle_metrics(data["root"], tmp_path / "full")
    assert full["test"]["segm/AP"] == pytest.approx(100.0) and not full["skipped"]
    spoil(data["bad"])
    with caplog.at_level(logging.WARNING):
        skipping = _oracle_metrics(data["root"], tmp_path / "skipping")
    good_only = _oracle_metrics(data["good_root"], tmp_path / "good")
    [entry] = skipping["skipped"]
    assert Path(entry["path"]) == data["bad"] and reason in entry["reason"]
    assert entry["dataset"] == f"{PREFIX}_val" and skipping["skipped_count"] == 1
    assert skipping["images"] == {"test": 1}
    # the bad image's heads are not missed detections: perfect still, and the good split's
    assert skipping["test"]["segm/AP"] == pytest.approx(100.0)
    assert skipping["test"]["bbox/AP"] == pytest.approx(100.0)
    np.testing.assert_equal(skipping["test"], good_only["test"])
    assert len([r for r in caplog.records if data["bad"].name in r.getMessage()]) == 1


@pytest.mark.slow
def test_evaluate_cli_skips_and_lists_a_bad_image(data, tmp_path, caplog) -> None:
    data["bad"].write_bytes(b"")
    base = ["--config-file", INSTANT, "--score-floor", "0", "--opts", *_opts(data["root"])]
    base += ["TEST.DETECTIONS_PER_IMAGE", "3"]
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        res = run_main(
            EVALUATE.main, ["--dataset", f"{PREFIX}_val", "--output", str(tmp_path / "ev"), *base]
        )
    assert res.exception is None and res.code == 1, (res.exception, res.stderr)
    assert not res.lines("evaluate.py")
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["skipped"] == [
        {
            "path": str(data["bad"]),
            "reason": "empty file",
            "dataset": f"{PREFIX}_val",
            "parts": ["test"],
        }
    ]
    assert metrics["skipped_count"] == 1 and metrics["images"] == {"test": 1}
    assert "skipped 1 image(s)" in res.stdout and f"{data['bad']}: empty file" in res.stdout
    assert len([r for r in caplog.records if data["bad"].name in r.getMessage()]) == 1
    assert data["bad"].read_bytes() == b""  # inputs unchanged

    # every image bad: one line, exit code 2, nothing written
    base[base.index(str(data["root"]))] = str(data["bad_root"])
    res = run_main(
        EVALUATE.main, ["--dataset", f"{PREFIX}_val", "--output", str(tmp_path / "none"), *base]
    )
    assert res.exception is None and res.code == 2, (res.exception, res.stderr)
    [line] = res.lines("evaluate.py")
    bad = data["bad_root"] / "annotations" / "val.json"
    assert line.startswith(f"evaluate.py: error: {bad}: nothing evaluated, all 1 images"), line
    assert f"{data['bad'].name}: empty file" in line
    assert not (tmp_path / "none").exists()


def test_a_split_used_for_val_and_test_lists_its_bad_image_once(data, tmp_path, caplog) -> None:
    data["bad"].write_bytes(b"")
    predictor = OraclePredictor(setup_cfg(INSTANT, _opts(data["root"])))
    name = f"{PREFIX}_val"
    with caplog.at_level(logging.WARNING):
        result, text = run_evaluation(predictor, tmp_path / "ev", dataset=name, val_dataset=name)
    assert result["skipped"] == [
        {
            "path": str(data["bad"]),
            "reason": "empty file",
            "dataset": name,
            "parts": ["val", "test"],
        }
    ]
    assert result["skipped_count"] == 1 and result["images"] == {"val": 1, "test": 1}
    assert text.count(str(data["bad"])) == 1 and f"(val and test split {name})" in text
    assert len([r for r in caplog.records if data["bad"].name in r.getMessage()]) == 1


LABELS = str(REPO / "configs" / "labels" / "default.yaml")


def _crops(root: Path, bad: str | None = None) -> Path:
    """Class folders of two 64-px crops each under ``root``; ``bad`` (a file name) written empty."""
    rng = np.random.default_rng(0)
    for folder in ("01_Normal", "abnormal"):
        (root / folder).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(
                str(root / folder / f"c{i}.png"), rng.integers(0, 255, (64, 64, 3), np.uint8)
            )
    if bad:
        (root / "abnormal" / bad).write_bytes(b"")
    return root


class WholeCropPredictor:
    """Finds one head, the whole crop, graded good: decodes as :class:`SpermPredictor` does."""

    grader = None
    predict_paths = SpermPredictor.predict_paths

    def __init__(self) -> None:
        self.cfg = setup_cfg(INSTANT)
        self.class_names = tuple(self.cfg.SPERM.CLASSES)
        self.class_colors = self.cfg.SPERM.CLASS_COLORS

    def predict_stream(self, items):
        for source, _, image in items:
            h, w = image.shape[:2]
            boxes = np.array([[0, 0, w, h]], np.float32)
            masks, scores = np.ones((1, h, w), bool), np.array([0.9], np.float32)
            classes = np.zeros(1, np.int64)
            yield image, ImagePrediction(
                source, (h, w), boxes, masks, scores, classes, self.class_names
            )


@pytest.mark.parametrize("same", [False, True], ids=["val_folders", "val_is_test"])
def test_a_bad_val_folder_image_is_listed_as_val_once(tmp_path, caplog, same) -> None:
    test = _crops(tmp_path / "test", bad=None if not same else "empty.png")
    val = test if same else _crops(tmp_path / "val", bad="empty.png")
    with caplog.at_level(logging.WARNING):
        result, text = run_evaluation(
            WholeCropPredictor(),
            tmp_path / "ev",
            folders=str(test),
            val_folders=str(val),
            label_map_path=LABELS,
        )
    bad = str(val / "abnormal" / "empty.png")
    parts = ["val", "test"] if same else ["val"]
    assert result["skipped"] == [{"path": bad, "reason": "empty file", "parts": parts}]
    assert result["skipped_count"] == 1
    assert result["val"]["images"] == result["test"]["images"] == 4
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["skipped"] == result["skipped"]
    assert text.count(bad) == 1 and f"{bad}: empty file ({' and '.join(parts)} folders)" in text
    assert len([r for r in caplog.records if "empty.png" in r.getMessage()]) == 1


@pytest.mark.slow
def test_evaluate_cli_exits_1_on_a_bad_val_folder_image(tmp_path) -> None:
    test, val = _crops(tmp_path / "test"), _crops(tmp_path / "val", bad="empty.png")
    argv = ["--config-file", INSTANT, "--folders", str(test), "--val-folders", str(val)]
    argv += ["--label-map", LABELS, "--output", str(tmp_path / "ev"), "--score-floor", "0"]
    torch.manual_seed(0)
    res = run_main(EVALUATE.main, [*argv, "--opts", "TEST.DETECTIONS_PER_IMAGE", "3"])
    assert res.exception is None and res.code == 1, (res.exception, res.stderr)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    bad = str(val / "abnormal" / "empty.png")
    assert metrics["skipped"] == [{"path": bad, "reason": "empty file", "parts": ["val"]}]
    assert f"{bad}: empty file (val folders)" in res.stdout


def test_the_summary_counts_images_and_unwalked_folders_apart() -> None:
    from sperm_d2.evaluation.skips import skipped_lines

    skipped = [
        {"path": "a/x.png", "reason": "empty file", "parts": ["test"]},
        {
            "path": "a/locked",
            "reason": "cannot read folder: denied",
            "parts": ["test"],
            "folder": True,
        },
    ]
    lines = skipped_lines(skipped, "lost", 10)
    assert lines[0].startswith("skipped 1 image(s) and 1 folder(s) not walked, listed")
    assert lines[1:] == [
        "  a/x.png: empty file (test folders)",
        "  a/locked: cannot read folder: denied (test folders)",
    ]
    assert skipped_lines(skipped[:1], "lost", 10)[0].startswith("skipped 1 image(s), listed")
