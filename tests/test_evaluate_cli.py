"""tools/evaluate.py: class-folder grading via the CLI, COCO split evaluation in process."""

import json
import subprocess
import sys

import cv2
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from sperm_d2.config import setup_cfg
from sperm_d2.evaluation.coco_split import choose_instance_threshold, threshold_metrics
from sperm_d2.evaluation.job import run_evaluation
from sperm_d2.inference import SpermPredictor

from .conftest import REPO

INSTANT = str(REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml")


@pytest.mark.slow
def test_evaluate_cli_folders_prints_metrics_and_writes_figures(tiny_dataset, tmp_path):
    records = DatasetCatalog.get(tiny_dataset.names["val"])
    root = tmp_path / "crops"
    for folder, recs in (
        ("01_Normal", records[:2]),
        ("abnormal", records[2:4]),
        ("non_sperm", records[:1]),
    ):
        (root / folder).mkdir(parents=True)
        for r in recs:
            cv2.imwrite(str(root / folder / f"{r['image_id']}.png"), cv2.imread(r["file_name"]))
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        str(REPO / "tools/evaluate.py"),
        "--config-file",
        INSTANT,
        "--folders",
        str(root),
        "--val-folders",
        str(root),
        "--output",
        str(out),
        "--score-floor",
        "0.0",
        "--opts",
        "TEST.DETECTIONS_PER_IMAGE",
        "3",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for word in ("accuracy", "sensitivity_bad", "specificity_bad", "f1_bad", "no_head", "pred bad"):
        assert word in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["images"] == 4 and metrics["ignored_folders"] == {"non_sperm": 1}
    assert metrics["threshold_chosen_on"] == "val folders"
    counts = metrics["confusion_matrix"]["counts"]
    assert sum(map(sum, counts)) == 4 and [sum(r) for r in counts] == [2, 2]
    assert cv2.imread(str(out / "confusion_matrix.png")) is not None


def test_threshold_metrics_hand_computed():
    import numpy as np

    # image 1: 3 heads (scores .9 .6 .2), the first and third match; 2 ground truths.
    # image 2: 1 head (.7) that does not match; 1 ground truth.
    matches = [
        (np.array([0.9, 0.6, 0.2]), np.array([1, 0, 1]), 2),
        (np.array([0.7]), np.array([0]), 1),
    ]
    m = threshold_metrics(matches, 0.5)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 3)
    m = threshold_metrics(matches, 0.0)
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 3)
    # per-image AP: image 1 precision 1 at recall .5, 2/3 at recall 1 -> .5 + .5 * 2/3; image 2: 0.
    assert m["pixellib_mAP50"] == pytest.approx((0.5 + 0.5 * 2 / 3 + 0.0) / 2)
    assert choose_instance_threshold(matches) == 0.0  # F1 4/7 at 0 beats 1/3 at 0.6-0.9


@pytest.mark.slow
def test_evaluate_coco_split_in_process(tiny_dataset, tmp_path):
    torch.manual_seed(0)
    opts = [
        "SPERM.DATA_ROOT",
        str(tiny_dataset.root),
        "SPERM.DATASET_PREFIX",
        "evaltest",
        "TEST.DETECTIONS_PER_IMAGE",
        "3",
    ]
    predictor = SpermPredictor(setup_cfg(INSTANT, opts), score_threshold=0.0)
    try:
        result, text = run_evaluation(
            predictor, tmp_path, dataset="evaltest_val", val_dataset="evaltest_train"
        )
    finally:
        for name in ("evaltest_train", "evaltest_val"):
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
                MetadataCatalog.remove(name)
    assert result["threshold_chosen_on"].startswith("evaltest_train")
    assert 0.0 <= result["threshold"] <= 1.0
    assert result["val"]["at_threshold/f1"] >= 0
    test = result["test"]
    for key in ("segm/AP", "segm/AP50", "bbox/AP", "segm/AP-good", "segm/AP-bad", "pixellib/mAP50"):
        assert key in test
    assert "AP-bad" in text and "pixellib/mAP50" in text
    assert json.loads((tmp_path / "metrics.json").read_text())["test_dataset"] == "evaltest_val"
