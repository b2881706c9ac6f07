"""Fields larger than the model's test size, predicted at the model's own scale in overlapping
windows and merged without duplicates.

The test-size resize (``INPUT.MIN/MAX_SIZE_TEST``) would shrink a large mosaic until its heads are
a fraction of the size the model was trained on. With ``SPERM.TILE.SIZE`` set, an image that
the resize would shrink more than a ``SIZE`` x ``SIZE`` window is cut into such windows, each read
at the window's scale (native scale for the full-field config), overlapping by
``SPERM.TILE.OVERLAP`` pixels so that every head up to that size lies whole in some window.

Merging (:func:`merge_windows`): a detection touching an edge of its window that is not the
image's border is a head cut by the window; whole detections are preferred, then higher scores;
a detection is dropped when its mask IoU with one already kept reaches ``SAME_HEAD_IOU`` (the
same head seen whole by two windows) or, for a cut one, when most of it lies inside one already
kept (the part of a head another window saw whole). Heads larger than the overlap can be cut in
every window; they are then kept as their largest part.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from sperm_d2.inference.types import ImagePrediction, empty_prediction
from sperm_d2.masks import SAME_HEAD_IOU, cropped_self_iou, mask_crop

#: a cut detection lying this much inside a kept one is that head's cut part
CUT_INSIDE = 0.5


class Window(NamedTuple):
    """A window of the image, ``[y0:y1, x0:x1]``."""

    y0: int
    x0: int
    y1: int
    x1: int


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]  # the last window ends at the border, full size


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """Windows of ``tile`` x ``tile`` pixels (smaller only where the image is) covering the image,
    neighbours overlapping by at least ``overlap`` pixels, row by row."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"tile {tile} and overlap {overlap}: need 0 <= overlap < tile")
    return [
        Window(y, x, min(y + tile, height), min(x + tile, width))
        for y in _starts(height, tile, overlap)
        for x in _starts(width, tile, overlap)
    ]


def _cut_by_window(masks: np.ndarray, window: Window, height: int, width: int) -> np.ndarray:
    """``(N,)`` bool: masks (window-sized) touching a window edge that is not the image's."""
    cut = np.zeros(masks.shape[0], bool)
    if masks.shape[0] == 0:
        return cut
    if window.y0 > 0:
        cut |= masks[:, 0, :].any(axis=1)
    if window.y1 < height:
        cut |= masks[:, -1, :].any(axis=1)
    if window.x0 > 0:
        cut |= masks[:, :, 0].any(axis=1)
    if window.x1 < width:
        cut |= masks[:, :, -1].any(axis=1)
    return cut


def merge_windows(
    parts: Sequence[tuple[Window, ImagePrediction]],
    image_size: tuple[int, int],
    source: str,
    class_names: tuple[str, ...],
    frame: int | None = None,
) -> ImagePrediction:
    """One prediction for the whole image from its windows' predictions (each in its window's
    pixels): boxes shifted, duplicates removed (module docstring), the kept masks pasted into
    the image. The heads come out sorted by score. Duplicates are found on the crops around the
    masks (views of the windows' masks): only the kept heads are laid out over the whole image,
    never every window's detections."""
    h, w = image_size
    boxes, crops, corners, scores, classes, cut = [], [], [], [], [], []
    for window, pred in parts:
        if not len(pred):
            continue
        shift = np.array([window.x0, window.y0, window.x0, window.y0], np.float32)
        boxes.append(pred.boxes + shift)
        for m in pred.masks:
            corner, crop = mask_crop(m, (window.y0, window.x0))
            corners.append(corner)
            crops.append(crop)
        scores.append(pred.scores)
        classes.append(pred.classes)
        cut.append(_cut_by_window(pred.masks, window, h, w))
    if not scores:
        return empty_prediction(source, (h, w), class_names, frame)
    all_scores = np.concatenate(scores)
    keep = _dedupe(*cropped_self_iou(crops, corners), all_scores, np.concatenate(cut))
    keep = keep[np.argsort(-all_scores[keep], kind="stable")]
    masks = np.zeros((len(keep), h, w), bool)
    for mask, k in zip(masks, keep):
        (y, x), crop = corners[k], crops[k]
        mask[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    return ImagePrediction(
        source=source,
        image_size=(h, w),
        boxes=np.concatenate(boxes)[keep],
        masks=masks,
        scores=all_scores[keep],
        classes=np.concatenate(classes)[keep],
        class_names=tuple(class_names),
        frame=frame,
    )


def _dedupe(
    ious: np.ndarray, areas: np.ndarray, scores: np.ndarray, is_cut: np.ndarray
) -> np.ndarray:
    """Indices kept: whole detections first, then by score (module docstring), from the
    detections' pairwise mask IoUs and areas."""
    # intersection of i and j from their IoU: |i n j| = iou * (|i| + |j|) / (1 + iou)
    inter = ious * (areas[:, None] + areas[None, :]) / (1.0 + ious)
    kept: list[int] = []
    for i in np.lexsort((-scores, is_cut)):
        dup = any(ious[i, k] >= SAME_HEAD_IOU for k in kept)
        if not dup and is_cut[i] and areas[i] > 0:
            dup = any(inter[i, k] / areas[i] >= CUT_INSIDE for k in kept)
        if not dup:
            kept.append(int(i))
    return np.asarray(kept, np.int64)
