"""The study's metric: per-image mask AP at IoU 0.5 with class match, averaged over images.

PixelLib evaluates with Matterport Mask R-CNN's ``utils.compute_ap``: per image, predictions are
sorted by score and greedily matched to the unmatched ground-truth mask of the same class with the
highest IoU (>= 0.5); precision is made monotonically decreasing and integrated over every recall
point (all-point interpolation, not COCO's 101 points). The mean over images is ``pixellib/mAP50``
(0-1), the number behind the study's 0.891.

``pixellib/mAP50_strict`` is the same after each head keeps only its arg-max class: detectron2's
Mask R-CNN scores every proposal once per class, so one head can yield a "good" and a "bad"
detection, and the lenient metric lets the right one match even when the wrong one scores higher
(the wrong one only costs a false positive). Matterport/PixelLib emit one
detection per region, so the image's detections are first de-duplicated class-agnostically
(:func:`sperm_d2.masks.one_per_head_keep` at IoU 0.5, the rule ``ImagePrediction.one_per_head``
applies in inference).

Images without ground truth: the per-image AP is undefined there (recall divides by zero, which
makes PixelLib's mean NaN). They are left out of the mean, counted, and their false positives are
reported separately (``pixellib/empty_images``, ``pixellib/empty_images_with_fp``), so debris
images still show up in the numbers without changing the comparable metric.
"""

from __future__ import annotations

import numpy as np

# encode_masks / rle_iou live in sperm_d2.masks (shared with inference); re-exported here.
from sperm_d2.masks import SAME_HEAD_IOU, encode_masks, one_per_head_keep, rle_iou

IOU_THRESHOLD = SAME_HEAD_IOU


def mask_iou(pred_masks: np.ndarray, gt_masks: np.ndarray) -> np.ndarray:
    """IoU matrix ``[P, G]`` of binary masks ``pred_masks [P, H, W]``, ``gt_masks [G, H, W]``."""
    if len(pred_masks) == 0 or len(gt_masks) == 0:
        return np.zeros((len(pred_masks), len(gt_masks)), np.float64)
    return rle_iou(encode_masks(pred_masks), encode_masks(gt_masks))


def match_predictions(
    ious: np.ndarray,
    pred_scores: np.ndarray,
    pred_classes: np.ndarray,
    gt_classes: np.ndarray,
    iou_threshold: float = IOU_THRESHOLD,
) -> np.ndarray:
    """Greedy score-ordered matching; returns, in descending score order, 1 for a match, else 0.

    A prediction takes the unmatched ground truth with the highest IoU whose class equals its own;
    candidates below ``iou_threshold`` are never matched (Matterport's ``compute_matches``).
    """
    order = np.argsort(-np.asarray(pred_scores), kind="stable")
    gt_taken = np.zeros(len(gt_classes), bool)
    matched = np.zeros(len(order), np.int64)
    for rank, p in enumerate(order):
        for g in np.argsort(-ious[p], kind="stable"):
            if ious[p, g] < iou_threshold:
                break
            if gt_taken[g] or pred_classes[p] != gt_classes[g]:
                continue
            gt_taken[g] = True
            matched[rank] = 1
            break
    return matched


def average_precision(matched: np.ndarray, num_gt: int) -> float:
    """All-point interpolated AP from score-ordered match flags and the number of ground truths."""
    if num_gt <= 0:
        raise ValueError("average precision is undefined without ground truth")
    tp = np.cumsum(matched)
    precision = tp / np.arange(1, len(matched) + 1)
    recall = tp / num_gt
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [1.0]])
    # Precision envelope: the best precision at any recall >= r.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def image_ap50(
    ious: np.ndarray,
    pred_scores: np.ndarray,
    pred_classes: np.ndarray,
    gt_classes: np.ndarray,
    iou_threshold: float = IOU_THRESHOLD,
) -> float | None:
    """Mask AP of one image at ``iou_threshold`` with class match; ``None`` without ground truth."""
    if len(gt_classes) == 0:
        return None
    if len(pred_scores) == 0:
        return 0.0
    matched = match_predictions(ious, pred_scores, pred_classes, gt_classes, iou_threshold)
    return average_precision(matched, len(gt_classes))


def image_ap50_strict(
    ious: np.ndarray,
    pred_masks: np.ndarray | list[dict],
    pred_scores: np.ndarray,
    pred_classes: np.ndarray,
    gt_classes: np.ndarray,
    pred_boxes: np.ndarray | None = None,
    iou_threshold: float = IOU_THRESHOLD,
) -> float | None:
    """:func:`image_ap50` after keeping one detection per head (its best-scoring class).

    ``ious`` is the ``[P, G]`` prediction/ground-truth IoU; ``pred_masks`` (``[P, H, W]`` or COCO
    RLEs) and ``pred_boxes`` decide which predictions are the same head (see
    :func:`one_per_head_keep`, IoU ``iou_threshold``).
    """
    keep = one_per_head_keep(pred_masks, pred_scores, iou_threshold, pred_boxes)
    ious = np.asarray(ious).reshape(len(pred_scores), len(gt_classes))
    return image_ap50(
        ious[keep],
        np.asarray(pred_scores)[keep],
        np.asarray(pred_classes)[keep],
        gt_classes,
        iou_threshold,
    )


def mean_image_ap(per_image: list[float | None]) -> float:
    """Mean of the defined per-image APs (images without ground truth are left out); NaN if none."""
    values = [v for v in per_image if v is not None]
    return float(np.mean(values)) if values else float("nan")
