"""Mask and box overlaps, and the one-detection-per-head rule shared by inference and metrics.

Only numpy and pycocotools: :mod:`sperm_d2.inference` and :mod:`sperm_d2.evaluation` both use it
without importing each other.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_util

#: the overlap above which two detections are taken to be the same head (PixelLib's match IoU)
SAME_HEAD_IOU = 0.5


def mask_box(
    masks: np.ndarray | Sequence[np.ndarray], margin: int = 0
) -> tuple[slice, slice] | None:
    """``(rows, cols)`` slices of the box around the pixels of a 2-D mask (or of several masks
    of one shape, together), grown by ``margin`` px within the array; ``None`` when there are
    none. Reductions along the axes: on a full field much faster than the box from
    ``np.nonzero``'s pixel lists, and no mask is copied."""
    masks = [masks] if isinstance(masks, np.ndarray) and masks.ndim == 2 else list(masks)
    if not masks:
        return None
    rows = np.flatnonzero(np.logical_or.reduce([m.any(1) for m in masks]))
    cols = np.flatnonzero(np.logical_or.reduce([m.any(0) for m in masks]))
    if not rows.size:
        return None
    h, w = masks[0].shape
    return (
        slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, h)),
        slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, w)),
    )


def encode_masks(masks: np.ndarray) -> list[dict]:
    """COCO RLEs of binary masks ``[N, H, W]`` (compact and fast for IoU)."""
    return mask_util.encode(np.asfortranarray(np.asarray(masks, dtype=np.uint8).transpose(1, 2, 0)))


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """A COCO/detectron2 annotation's ``segmentation`` (polygons, uncompressed or compressed RLE)
    as one compressed COCO RLE of an ``height`` x ``width`` image."""
    if isinstance(segmentation, list):  # polygons (the parts of one head are merged)
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict):
        if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            return mask_util.frPyObjects(segmentation, height, width)
        return segmentation
    raise TypeError(f"unsupported segmentation type {type(segmentation).__name__}")


def rle_iou(pred_rles: list[dict], gt_rles: list[dict]) -> np.ndarray:
    """IoU matrix ``[P, G]`` between two lists of COCO RLEs of the same image size."""
    if not pred_rles or not gt_rles:
        return np.zeros((len(pred_rles), len(gt_rles)), np.float64)
    return np.asarray(mask_util.iou(pred_rles, gt_rles, [0] * len(gt_rles)), np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[P, G]`` of XYXY boxes ``a [P, 4]``, ``b [G, 4]`` (0 where both are empty)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


#: a mask as the crop holding all its pixels and the image coordinates ``(y0, x0)`` of the
#: crop's top-left pixel
Crop = tuple[tuple[int, int], np.ndarray]


def mask_crop(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> Crop:
    """``mask`` (2-D bool) as the crop around its pixels (a view) and the crop's corner in image
    coordinates, ``offset`` being the mask's own corner there; an empty mask is a 0 x 0 crop."""
    box = mask_box(mask)
    if box is None:
        return offset, np.zeros((0, 0), bool)
    return (offset[0] + box[0].start, offset[1] + box[1].start), mask[box]


def _array_self_iou(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pairwise mask IoU ``[N, N]``, areas ``[N]``) of bool masks ``[N, H, W]``: each mask cut
    to its box (:func:`cropped_self_iou`), so a field's heads cost their boxes, not N whole
    fields as RLEs."""
    crops = [mask_crop(m) for m in masks]
    return cropped_self_iou([c for _, c in crops], [corner for corner, _ in crops])


def cropped_self_iou(
    crops: Sequence[np.ndarray], corners: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """(pairwise mask IoU ``[N, N]``, areas ``[N]``) of masks given as bool crops, each holding
    all of its mask's pixels, with the image coordinates ``(y0, x0)`` of their top-left corners
    (an empty mask: a 0 x 0 crop). Each pair's intersection is counted in the overlap of the two
    crops only, so no mask is ever laid out over the whole image."""
    n = len(crops)
    areas = np.array([float(c.sum()) for c in crops], np.float64)
    b = np.zeros((n, 4), np.int64)  # (y0, y1, x0, x1) per crop
    for k, (c, (y, x)) in enumerate(zip(crops, corners)):
        b[k] = y, y + c.shape[0], x, x + c.shape[1]
    y0, y1 = np.maximum.outer(b[:, 0], b[:, 0]), np.minimum.outer(b[:, 1], b[:, 1])
    x0, x1 = np.maximum.outer(b[:, 2], b[:, 2]), np.minimum.outer(b[:, 3], b[:, 3])
    ious = np.zeros((n, n))
    for i, j in np.argwhere(np.triu((y0 < y1) & (x0 < x1), 1)):
        ys, xs = (y0[i, j], y1[i, j]), (x0[i, j], x1[i, j])
        a = crops[i][ys[0] - b[i, 0] : ys[1] - b[i, 0], xs[0] - b[i, 2] : xs[1] - b[i, 2]]
        c = crops[j][ys[0] - b[j, 0] : ys[1] - b[j, 0], xs[0] - b[j, 2] : xs[1] - b[j, 2]]
        inter = float((a & c).sum())
        union = areas[i] + areas[j] - inter
        ious[i, j] = ious[j, i] = inter / union if union > 0 else 0.0
    return ious, areas


def _self_iou(
    masks: np.ndarray | Sequence[dict] | None, boxes: np.ndarray | None, n: int
) -> np.ndarray:
    """Pairwise IoU ``[N, N]``: mask IoU, box IoU for pairs where either mask is empty."""
    if masks is None or (isinstance(masks, np.ndarray) and masks[:1].size == 0):
        ious, areas = np.zeros((n, n)), np.zeros(n)  # no masks at all (or 0x0 images): boxes decide
    elif isinstance(masks, np.ndarray):
        if len(masks) != n:
            raise ValueError(f"{len(masks)} masks for {n} scores")
        ious, areas = _array_self_iou(np.asarray(masks, bool))
    else:
        rles = list(masks)
        if len(rles) != n:
            raise ValueError(f"{len(rles)} masks for {n} scores")
        ious, areas = rle_iou(rles, rles), np.asarray(mask_util.area(rles), np.float64)
    empty = areas <= 0
    if empty.any():
        fallback = box_iou(boxes, boxes) if boxes is not None else np.zeros((n, n))
        either = empty[:, None] | empty[None, :]
        ious = np.where(either, fallback, ious)
    return ious


def one_per_head_keep(
    masks: np.ndarray | Sequence[dict] | None,
    scores: np.ndarray,
    iou_threshold: float = SAME_HEAD_IOU,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the detections kept when every head keeps only its best-scoring detection.

    detectron2's Mask R-CNN scores each proposal once per class and so can emit a "good" and a
    "bad" detection of the same head; Matterport/PixelLib keep only the arg-max class of a region.
    Class-agnostic: in descending score order a detection is kept only if its IoU with every
    already-kept one is below ``iou_threshold``. The IoU is the mask IoU (``masks``: ``[N, H, W]``
    bool or a list of COCO RLEs), or the box IoU (``boxes``: ``[N, 4]`` XYXY) for a pair where
    either mask is empty; with no boxes such a pair counts as disjoint.

    Returns the kept indices into the inputs, in descending score order (ties in input order).
    """
    scores = np.asarray(scores).reshape(-1)
    n = len(scores)
    if n == 0:
        return np.zeros((0,), np.int64)
    ious = _self_iou(masks, boxes, n)
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(ious[i, k] < iou_threshold for k in kept):
            kept.append(int(i))
    return np.asarray(kept, np.int64)


#: a head whose mask comes within this many pixels of the image edge is cut by the border (not
#: assessable: WHO counts only whole cells). Annotators stop outlines 0-1 px short of the edge: on
#: the Sperm Parsing fields 35 of 1,240 training heads end within 1 px of it, 37 within 2, 46
#: within 5, so the rule does not hinge on the exact margin.
BORDER_MARGIN = 2


def cut_by_border(masks: np.ndarray, margin: int = BORDER_MARGIN) -> np.ndarray:
    """``(N,)`` bool: which of the masks ``[N, H, W]`` reach the outer ``margin`` pixels of the
    image (an empty mask is not cut)."""
    masks = np.asarray(masks, bool)
    n = masks.shape[0]
    if n == 0 or masks.shape[1] == 0 or masks.shape[2] == 0:
        return np.zeros((n,), bool)
    k = max(1, int(margin))
    return (
        masks[:, :k, :].any(axis=(1, 2))
        | masks[:, -k:, :].any(axis=(1, 2))
        | masks[:, :, :k].any(axis=(1, 2))
        | masks[:, :, -k:].any(axis=(1, 2))
    )


def rle_cut_by_border(rles: Sequence[dict], margin: int = BORDER_MARGIN) -> np.ndarray:
    """:func:`cut_by_border` of COCO RLEs (decoded one at a time: memory of one mask)."""
    return np.array([bool(cut_by_border(mask_util.decode(r)[None], margin)[0]) for r in rles], bool)
