"""The study's metric: per-image mask AP at IoU 0.5 with class match, averaged over images.

PixelLib evaluates with Matterport Mask R-CNN's ``utils.compute_ap``: per image, predictions are
sorted by score and greedily matched to the unmatched ground-truth mask of the same class with the
highest IoU (>= 0.5); precision is made monotonically decreasing and integrated over every recall
point (all-point interpolation, not COCO's 101 points). The mean over images is ``pixellib/mAP50``
(0-1), the number behind the study's 0.891.

Images without ground truth: the per-image AP is undefined there (recall divides by zero, which
makes PixelLib's mean NaN). They are left out of the mean, counted, and their false positives are
reported separately (``pixellib/empty_images``, ``pixellib/empty_images_with_fp``), so debris
images still show up in the numbers without changing the comparable metric.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_util

IOU_THRESHOLD = 0.5


def mask_iou(pred_masks: np.ndarray, gt_masks: np.ndarray) -> np.ndarray:
    """IoU matrix ``[P, G]`` of binary masks ``pred_masks [P, H, W]``, ``gt_masks [G, H, W]``."""
    if len(pred_masks) == 0 or len(gt_masks) == 0:
        return np.zeros((len(pred_masks), len(gt_masks)), np.float64)
    return rle_iou(encode_masks(pred_masks), encode_masks(gt_masks))


def encode_masks(masks: np.ndarray) -> list[dict]:
    """COCO RLEs of binary masks ``[N, H, W]`` (compact and fast for IoU)."""
    return mask_util.encode(np.asfortranarray(np.asarray(masks, dtype=np.uint8).transpose(1, 2, 0)))


def rle_iou(pred_rles: list[dict], gt_rles: list[dict]) -> np.ndarray:
    """IoU matrix ``[P, G]`` between two lists of COCO RLEs of the same image size."""
    if not pred_rles or not gt_rles:
        return np.zeros((len(pred_rles), len(gt_rles)), np.float64)
    return np.asarray(mask_util.iou(pred_rles, gt_rles, [0] * len(gt_rles)), np.float64)


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


def mean_image_ap(per_image: list[float | None]) -> float:
    """Mean of the defined per-image APs (images without ground truth are left out); NaN if none."""
    values = [v for v in per_image if v is not None]
    return float(np.mean(values)) if values else float("nan")
