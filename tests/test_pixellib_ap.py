"""pixellib/mAP50 (per-image mask AP@0.5, class match, mean over images) on hand-computed cases."""

import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Instances
from pycocotools import mask as mask_util

from sperm_d2.evaluation import PixellibEvaluator, build_evaluator
from sperm_d2.evaluation.pixellib_ap import (
    average_precision,
    image_ap50,
    mask_iou,
    match_predictions,
    mean_image_ap,
)

from .conftest import REPO


def _ap(ious, scores, pred_cls, gt_cls):
    return image_ap50(np.array(ious, float), np.array(scores), np.array(pred_cls), np.array(gt_cls))


def test_mask_iou_of_overlapping_squares() -> None:
    a = np.zeros((1, 8, 8), bool)
    b = np.zeros((2, 8, 8), bool)
    a[0, 0:4, 0:4] = True  # 16 px
    b[0, 2:6, 0:4] = True  # overlaps a in 8 px -> IoU 8 / 24
    b[1, 4:8, 4:8] = True  # disjoint
    np.testing.assert_allclose(mask_iou(a, b), [[8 / 24, 0.0]])
    assert mask_iou(a[:0], b).shape == (0, 2)


def test_tp_fp_tp_gives_all_point_interpolated_ap() -> None:
    # scores 0.9 (hits gt0), 0.8 (miss), 0.7 (hits gt1): P = 1, 1/2, 2/3 at R = 1/2, 1/2, 1.
    # Envelope: 1 up to R=1/2, 2/3 up to R=1 -> AP = 0.5 * 1 + 0.5 * 2/3.
    ious = [[0.9, 0.0], [0.3, 0.2], [0.0, 0.6]]
    assert _ap(ious, [0.9, 0.8, 0.7], [0, 0, 0], [0, 0]) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_score_order_not_input_order_decides() -> None:
    ious = [[0.0, 0.6], [0.3, 0.2], [0.9, 0.0]]  # same as above, rows shuffled
    assert _ap(ious, [0.7, 0.8, 0.9], [0, 0, 0], [0, 0]) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_class_must_match() -> None:
    assert _ap([[0.95]], [0.9], [1], [0]) == 0.0
    assert _ap([[0.95]], [0.9], [0], [0]) == 1.0


def test_wrong_class_best_overlap_falls_through_to_next_gt_of_same_class() -> None:
    # Matterport's compute_matches skips a higher-IoU gt of another class and keeps looking.
    ious = [[0.9, 0.6]]
    matched = match_predictions(np.array(ious), np.array([0.9]), np.array([1]), np.array([0, 1]))
    assert matched.tolist() == [1]
    assert _ap(ious, [0.9], [1], [0, 1]) == pytest.approx(0.5)  # one of two heads found


def test_duplicate_detection_is_a_false_positive() -> None:
    # gt matched by the 0.9 detection; the 0.8 duplicate is FP; recall stays 1 -> AP 1.0,
    # but a duplicate ranked first would lower it: FP (P=0) then TP (P=1/2) -> AP 0.5.
    assert _ap([[0.9], [0.8]], [0.9, 0.8], [0, 0], [0]) == 1.0
    assert _ap([[0.4], [0.8]], [0.9, 0.8], [0, 0], [0]) == pytest.approx(0.5)


def test_iou_threshold_is_inclusive() -> None:
    assert _ap([[0.5]], [0.9], [0], [0]) == 1.0
    assert _ap([[0.4999]], [0.9], [0], [0]) == 0.0


def test_no_predictions_and_no_ground_truth() -> None:
    assert _ap(np.zeros((0, 2)), [], [], [0, 1]) == 0.0
    assert _ap(np.zeros((3, 0)), [0.9, 0.5, 0.1], [0, 0, 1], []) is None
    with pytest.raises(ValueError):
        average_precision(np.array([1]), 0)


def test_mean_over_images_leaves_out_images_without_ground_truth() -> None:
    assert mean_image_ap([1.0, 0.5, None, 0.0]) == pytest.approx(0.5)
    assert math.isnan(mean_image_ap([None]))


def _gt_masks(record: dict) -> tuple[np.ndarray, np.ndarray]:
    h, w = record["height"], record["width"]
    masks, classes = [], []
    for ann in record["annotations"]:
        rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], h, w))
        masks.append(mask_util.decode(rle).astype(bool))
        classes.append(ann["category_id"])
    return np.stack(masks), np.array(classes)


def _run(evaluator: PixellibEvaluator, records: list[dict], swap_class: bool) -> dict:
    evaluator.reset()
    for rec in records:
        masks, classes = _gt_masks(rec)
        inst = Instances((rec["height"], rec["width"]))
        inst.pred_masks = torch.from_numpy(masks)
        inst.scores = torch.linspace(0.9, 0.5, len(classes))
        inst.pred_classes = torch.from_numpy(1 - classes if swap_class else classes)
        evaluator.process([{"image_id": rec["image_id"]}], [{"instances": inst}])
    return evaluator.evaluate()["pixellib"]


def test_evaluator_on_registered_dataset(tiny_dataset) -> None:
    name = tiny_dataset.names["val"]
    records = DatasetCatalog.get(name)
    evaluator = PixellibEvaluator(name, distributed=False)
    perfect = _run(evaluator, records, swap_class=False)
    assert perfect["mAP50"] == pytest.approx(1.0)
    assert perfect["images"] == len(records) and perfect["empty_images"] == 0
    assert _run(evaluator, records, swap_class=True)["mAP50"] == 0.0


def _run_duplicated(evaluator: PixellibEvaluator, records: list[dict], wrong_first: bool) -> dict:
    """Each head detected twice, once per class (as detectron2 does); the wrong class scores
    above every right one (``wrong_first``) or below all of them."""
    evaluator.reset()
    for rec in records:
        masks, classes = _gt_masks(rec)
        n = len(classes)
        right = torch.linspace(0.5, 0.4, n)
        wrong = right + 0.45 if wrong_first else right - 0.3
        inst = Instances((rec["height"], rec["width"]))
        inst.pred_masks = torch.from_numpy(np.concatenate([masks, masks]))
        inst.scores = torch.cat([right, wrong])
        inst.pred_classes = torch.from_numpy(np.concatenate([classes, 1 - classes]))
        evaluator.process([{"image_id": rec["image_id"]}], [{"instances": inst}])
    return evaluator.evaluate()["pixellib"]


def test_evaluator_strict_variant_keeps_one_detection_per_head(tiny_dataset) -> None:
    name = tiny_dataset.names["val"]
    records = DatasetCatalog.get(name)
    evaluator = PixellibEvaluator(name, distributed=False)
    assert _run(evaluator, records, swap_class=False)["mAP50_strict"] == pytest.approx(1.0)
    right_first = _run_duplicated(evaluator, records, wrong_first=False)
    assert right_first["mAP50"] == pytest.approx(1.0)  # duplicates ranked last cost nothing
    assert right_first["mAP50_strict"] == pytest.approx(1.0)
    wrong_first = _run_duplicated(evaluator, records, wrong_first=True)
    # Lenient: every wrong detection ranks first, then every head is found -> AP > 0.
    assert 0.0 < wrong_first["mAP50"] < 1.0
    assert wrong_first["mAP50_strict"] == 0.0  # strict: each head keeps only its wrong class


def test_build_evaluator_combines_coco_pixellib_and_heads(tiny_dataset, tmp_path) -> None:
    from sperm_d2.config import setup_cfg

    cfg = setup_cfg(str(REPO / "configs" / "Base-SpermMaskRCNN-FPN.yaml"), [])
    evaluators = build_evaluator(cfg, tiny_dataset.names["val"], tmp_path)
    kinds = [type(e).__name__ for e in evaluators._evaluators]
    assert kinds == ["COCOEvaluator", "PixellibEvaluator", "HeadsEvaluator"]
    box_only = setup_cfg(None, ["MODEL.MASK_ON", "False"])
    kinds = [
        type(e).__name__ for e in build_evaluator(box_only, tiny_dataset.names["val"])._evaluators
    ]
    assert kinds == ["COCOEvaluator"]
