"""One detection per head: the shared rule (sperm_d2.masks.one_per_head_keep), its use in
ImagePrediction.one_per_head, the strict pixellib/mAP50 built on it, and a mask's box
(sperm_d2.masks.mask_box), on hand-made masks."""

import dataclasses
import json
import math

import numpy as np
import pytest

from sperm_d2.benchmark.results import collect_metrics
from sperm_d2.benchmark.results_table import ROWS
from sperm_d2.evaluation.coco_split import threshold_metrics
from sperm_d2.evaluation.job import coco_text
from sperm_d2.evaluation.pixellib_ap import image_ap50, image_ap50_strict, mask_iou
from sperm_d2.inference.types import ImagePrediction, empty_prediction
from sperm_d2.masks import box_iou, encode_masks, one_per_head_keep


def _square(y: int, x: int, size: int = 6, shape=(24, 24)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


# Head A at (2, 2) detected twice (the two masks overlap in 30 of 42 px: IoU 0.71), head B apart.
HEAD_A = _square(2, 2)
HEAD_A_SHIFTED = _square(3, 2)
HEAD_B = _square(14, 14)


def test_overlapping_detections_of_one_head_keep_the_best_scoring_one() -> None:
    masks = np.stack([HEAD_A, HEAD_B, HEAD_A_SHIFTED])
    scores = np.array([0.6, 0.5, 0.9])
    assert one_per_head_keep(masks, scores).tolist() == [2, 1]  # descending score order
    # The same with COCO RLEs; a threshold above their IoU keeps all three.
    assert one_per_head_keep(encode_masks(masks), scores).tolist() == [2, 1]
    assert one_per_head_keep(masks, scores, iou_threshold=0.8).tolist() == [2, 0, 1]


def test_iou_threshold_is_exclusive_for_keeping() -> None:
    masks = np.stack([HEAD_A, HEAD_A])
    assert one_per_head_keep(masks, [0.9, 0.9]).tolist() == [0]  # tie: input order
    a, b = _square(0, 0, 4), _square(0, 0, 4)
    b[:, 2:] = False  # b is the left half of a: IoU 8 / 16 = 0.5 exactly -> the same head
    assert one_per_head_keep(np.stack([a, b]), [0.9, 0.8], 0.5).tolist() == [0]
    assert one_per_head_keep(np.stack([a, b]), [0.9, 0.8], 0.51).tolist() == [0, 1]


def test_non_overlapping_heads_are_all_kept() -> None:
    masks = np.stack([_square(0, 0), _square(0, 8), _square(8, 0), _square(8, 8)])
    assert one_per_head_keep(masks, [0.1, 0.9, 0.5, 0.7]).tolist() == [1, 3, 2, 0]


def test_empty_predictions() -> None:
    keep = one_per_head_keep(np.zeros((0, 24, 24), bool), np.zeros(0, np.float32))
    assert keep.shape == (0,) and keep.dtype == np.int64
    assert one_per_head_keep([], []).shape == (0,)
    pred = empty_prediction("x.png", (24, 24), ("good", "bad"))
    out = pred.one_per_head()
    assert len(out) == 0 and out.masks.shape == (0, 24, 24) and out.boxes.shape == (0, 4)


def test_box_iou_fallback_for_empty_masks() -> None:
    boxes = np.array([_box(HEAD_A), _box(HEAD_A_SHIFTED), _box(HEAD_B)], np.float32)
    np.testing.assert_allclose(box_iou(boxes[:1], boxes[1:]), [[30 / 42, 0.0]])
    empty = np.zeros((3, 24, 24), bool)
    assert one_per_head_keep(empty, [0.9, 0.8, 0.7], boxes=boxes).tolist() == [0, 2]
    assert one_per_head_keep(None, [0.9, 0.8, 0.7], boxes=boxes).tolist() == [0, 2]
    # Only one mask of the pair empty: the pair falls back to boxes too.
    masks = np.stack([HEAD_A, np.zeros((24, 24), bool), HEAD_B])
    assert one_per_head_keep(masks, [0.9, 0.8, 0.7], boxes=boxes).tolist() == [0, 2]
    # No boxes to fall back on: empty masks overlap nothing.
    assert one_per_head_keep(empty, [0.9, 0.8, 0.7]).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="2 masks for 3 scores"):
        one_per_head_keep(encode_masks(empty[:2]), [0.9, 0.8, 0.7])


@dataclasses.dataclass
class _WithOptionalFields(ImagePrediction):
    """ImagePrediction with the optional per-head arrays (declared again if the base has them)."""

    p_bad: np.ndarray | None = None
    detector_classes: np.ndarray | None = None


def _prediction(cls=ImagePrediction, **extra) -> ImagePrediction:
    masks = np.stack([HEAD_A_SHIFTED, HEAD_A, HEAD_B])  # "bad" A beats "good" A
    return cls(
        source="x.png",
        image_size=(24, 24),
        boxes=np.array([_box(m) for m in masks], np.float32),
        masks=masks,
        scores=np.array([0.9, 0.6, 0.5], np.float32),
        classes=np.array([1, 0, 0], np.int64),
        class_names=("good", "bad"),
        **extra,
    )


def test_one_per_head_keeps_fields_aligned() -> None:
    pred = _prediction()
    out = pred.one_per_head()
    assert len(out) == 2 and out.labels == ["bad", "good"]
    np.testing.assert_array_equal(out.masks, pred.masks[[0, 2]])
    np.testing.assert_array_equal(out.boxes, pred.boxes[[0, 2]])
    np.testing.assert_array_equal(out.scores, pred.scores[[0, 2]])
    np.testing.assert_array_equal(out.classes, [1, 0])
    assert out.source == "x.png" and out.class_names == ("good", "bad")
    assert len(pred) == 3, "the original is left as it was"
    assert len(pred.one_per_head(iou_threshold=0.8)) == 3


def test_select_indexes_optional_per_head_fields() -> None:
    pred = _prediction(
        _WithOptionalFields,
        p_bad=np.array([0.7, 0.2, 0.1], np.float32),
        detector_classes=np.array([1, 0, 0], np.int64),
    )
    for out, rows in (
        (pred.one_per_head(), [0, 2]),
        (pred.above(0.55), [0, 1]),
        (pred.top(1), [0]),
    ):
        assert isinstance(out, _WithOptionalFields)
        np.testing.assert_array_equal(out.p_bad, pred.p_bad[rows])
        np.testing.assert_array_equal(out.detector_classes, pred.detector_classes[rows])
        np.testing.assert_array_equal(out.scores, pred.scores[rows])
    absent = _prediction(_WithOptionalFields).one_per_head()
    assert absent.p_bad is None and absent.detector_classes is None and len(absent) == 2


def test_strict_ap_keeps_only_the_arg_max_class_of_a_head() -> None:
    # One "good" head (class 0) detected as "bad" at 0.9 and as "good" at 0.8.
    gt = HEAD_A[None]
    masks = np.stack([HEAD_A_SHIFTED, HEAD_A])
    scores, classes, gt_classes = np.array([0.9, 0.8]), np.array([1, 0]), np.array([0])
    ious = mask_iou(masks, gt)
    # Lenient: FP then TP -> precision 1/2 at recall 1 -> AP 0.5. Strict: only "bad" -> 0.
    assert image_ap50(ious, scores, classes, gt_classes) == pytest.approx(0.5)
    assert image_ap50_strict(ious, masks, scores, classes, gt_classes) == 0.0
    # Right class ranked first: both 1.0 (lenient ranks the duplicate last, strict drops it).
    right_first = np.array([0.8, 0.9])
    assert image_ap50(ious, right_first, classes, gt_classes) == 1.0
    assert image_ap50_strict(ious, masks, right_first, classes, gt_classes) == 1.0


def test_strict_ap_on_separate_heads_equals_lenient() -> None:
    masks, gt = np.stack([HEAD_A, HEAD_B]), np.stack([HEAD_A_SHIFTED, HEAD_B])
    args = (mask_iou(masks, gt), np.array([0.9, 0.4]), np.array([0, 1]), np.array([0, 1]))
    assert image_ap50(*args) == 1.0
    assert image_ap50_strict(args[0], masks, *args[1:]) == 1.0
    no_pred = np.zeros((0, 24, 24), bool)
    assert image_ap50_strict(np.zeros((0, 2)), no_pred, [], [], np.array([0, 1])) == 0.0
    assert image_ap50_strict(np.zeros((2, 0)), masks, [0.9, 0.4], [0, 1], np.array([])) is None


def test_threshold_metrics_reports_the_strict_variant() -> None:
    # The image above: lenient matches FP, TP; strict keeps only the FP.
    matches = [(np.array([0.9, 0.8]), np.array([0, 1]), 1)]
    strict = [(np.array([0.9]), np.array([0]), 1)]
    m = threshold_metrics(matches, 0.0, strict)
    assert m["pixellib_mAP50"] == pytest.approx(0.5) and m["pixellib_mAP50_strict"] == 0.0
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == 1.0
    assert math.isnan(threshold_metrics(matches, 0.0)["pixellib_mAP50_strict"])


def test_reports_carry_the_strict_metric(tmp_path) -> None:
    test = {"segm/AP": 50.0, "pixellib/mAP50": 0.8, "pixellib/mAP50_strict": 0.7}
    result = {
        "test_dataset": "t",
        "threshold": 0.5,
        "threshold_chosen_on": "v",
        "test": {**test, "at_threshold/f1": 0.6},
    }
    text = coco_text(result, ("good", "bad"))
    assert "pixellib/mAP50 (0-1): 0.800" in text and "arg-max class): 0.700" in text
    coco, folders = tmp_path / "coco.json", tmp_path / "folders.json"
    coco.write_text(json.dumps({"test": test, "threshold": 0.5}))
    folders.write_text(json.dumps({"test": {}}))
    assert collect_metrics(coco, folders)["pixellib/mAP50_strict"] == 0.7
    assert (
        "pixellib/mAP50_strict",
        "pixellib/mAP50 strict (arg-max class per head)",
        "frac",
    ) in ROWS


def test_mask_box_is_the_box_of_the_pixels_grown_within_the_array() -> None:
    from sperm_d2.masks import mask_box

    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = np.zeros((int(rng.integers(1, 40)), int(rng.integers(1, 40))), bool)
        mask[rng.integers(0, mask.shape[0], 3), rng.integers(0, mask.shape[1], 3)] = True
        ys, xs = np.nonzero(mask)
        for margin in (0, 2):
            rows, cols = mask_box(mask, margin)
            assert rows == slice(
                max(ys.min() - margin, 0), min(ys.max() + 1 + margin, mask.shape[0])
            )
            assert cols == slice(
                max(xs.min() - margin, 0), min(xs.max() + 1 + margin, mask.shape[1])
            )
            assert mask[rows, cols].sum() == mask.sum()
    assert mask_box(np.zeros((5, 7), bool)) is None


def test_one_per_head_on_mask_arrays_matches_the_rle_overlaps() -> None:
    """Mask arrays are compared in their boxes' overlaps, RLE lists as COCO RLEs: the same IoU
    for every pair (random blobs, overlapping, apart, empty), so the same heads are kept."""
    from sperm_d2.masks import _self_iou

    rng = np.random.default_rng(1)
    for _ in range(40):
        n, h, w = int(rng.integers(1, 9)), int(rng.integers(8, 50)), int(rng.integers(8, 50))
        masks = np.zeros((n, h, w), bool)
        for k in range(n):
            if rng.random() < 0.2:
                continue  # an empty mask: the box IoU decides its pairs
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            masks[k, y : y + int(rng.integers(2, 20)), x : x + int(rng.integers(2, 20))] = True
            masks[k] &= rng.random((h, w)) < 0.8
        corner = rng.uniform(0, 40, (n, 2))
        boxes = np.hstack([corner, corner + 9])  # the fallback for pairs with an empty mask
        arrays, rles = _self_iou(masks, boxes, n), _self_iou(list(encode_masks(masks)), boxes, n)
        off = ~np.eye(n, dtype=bool)
        np.testing.assert_allclose(arrays[off], rles[off], atol=1e-12)
        scores = rng.random(n)
        assert (
            one_per_head_keep(masks, scores, 0.3, boxes).tolist()
            == one_per_head_keep(list(encode_masks(masks)), scores, 0.3, boxes).tolist()
        )
