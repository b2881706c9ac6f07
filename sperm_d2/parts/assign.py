"""Part pixels of a field's label map assigned to each detected head (numpy + OpenCV).

Head parts (acrosome, nucleus, vacuole) are the pixels of those classes inside the head's mask
grown by :data:`HEAD_MARGIN` px (the detector's outline and the segmenter's disagree by a pixel
or two); a pixel near two heads goes to the nearer. Midpiece and tail pixels form connected
components; a midpiece component belongs to the head it touches (within :data:`ATTACH_PX`),
a tail component to the midpiece (or, without one, the head) it touches. A component touching
two heads goes to the one it overlaps most once grown.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from sperm_d2.parts.targets import HEAD_PARTS, PART_CLASSES

#: px a head's mask is grown by to collect its head parts
HEAD_MARGIN = 2
#: px a head (or midpiece) is grown by to find the midpiece (or tail) components touching it
ATTACH_PX = 6


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def _around(mask: np.ndarray, px: int) -> tuple[slice, slice]:
    """The box of ``mask``'s pixels grown by ``px`` on each side, clipped to the image: every
    pixel within ``px`` of the mask lies inside it, so growing the mask or its distance transform
    there is exact (and costs the box, not the field)."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return slice(max(0, y - px), y + h + px), slice(max(0, x - px), x + w + px)


def _attach(part: np.ndarray, anchors: list[np.ndarray]) -> list[np.ndarray]:
    """Components of ``part`` given to the anchor (grown by ATTACH_PX) they overlap most."""
    if not part.any() or not anchors:
        return [np.zeros(part.shape, bool) for _ in anchors]
    n, comp = cv2.connectedComponents(part.astype(np.uint8), connectivity=8)
    # overlaps[i, k]: pixels of component k inside anchor i grown; one pass over each anchor's
    # pixels, not one over the image per (component, anchor) pair
    overlaps = np.zeros((len(anchors), n), np.int64)
    for i, a in enumerate(anchors):
        if a.any():
            box = _around(a, ATTACH_PX)
            overlaps[i] = np.bincount(comp[box][_grow(a[box], ATTACH_PX)], minlength=n)
    overlaps[:, 0] = 0  # label 0 is the background, no component
    owner = np.where(overlaps.max(0) > 0, overlaps.argmax(0), -1)[comp]  # first anchor on a tie
    return [owner == i for i in range(len(anchors))]


def assign_parts(
    labels: np.ndarray, heads: np.ndarray, class_names: Sequence[str] = PART_CLASSES
) -> list[dict[str, np.ndarray]]:
    """Per head of ``heads`` (N, H, W) bool, its parts: part name -> (H, W) bool, from a label map
    (0 background, 1 + i for ``class_names[i]``)."""
    heads = np.asarray(heads, bool)
    n = len(heads)
    if n == 0:
        return []
    index = {name: i + 1 for i, name in enumerate(class_names)}
    # the nearest head of every pixel within HEAD_MARGIN (distance to each head's mask, computed
    # in the box around the head; the first head wins a tie)
    dist = np.full(labels.shape, np.inf, np.float32)
    nearest = np.full(labels.shape, -1, np.int64)
    for i, h in enumerate(heads):
        if not h.any():
            continue
        box = _around(h, HEAD_MARGIN + 1)
        d = cv2.distanceTransform((~h[box]).astype(np.uint8), cv2.DIST_L2, 3)
        closer = d < dist[box]
        dist[box][closer] = d[closer]
        nearest[box][closer] = i
    nearest[dist > HEAD_MARGIN] = -1
    mine = [nearest == i for i in range(n)]
    out: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for name in HEAD_PARTS:
        if name not in index:
            continue
        pix = labels == index[name]
        for i in range(n):
            out[i][name] = pix & mine[i]
    head_masks = [
        heads[i] | np.any([out[i][p] for p in HEAD_PARTS if p in out[i]], axis=0) for i in range(n)
    ]
    mids = _attach(labels == index["midpiece"], head_masks) if "midpiece" in index else None
    if mids is not None:
        for i in range(n):
            out[i]["midpiece"] = mids[i]
    if "tail" in index:
        anchors = [
            mids[i] if mids is not None and mids[i].any() else head_masks[i] for i in range(n)
        ]
        tails = _attach(labels == index["tail"], anchors)
        for i in range(n):
            out[i]["tail"] = tails[i]
    return out
