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


def _attach(part: np.ndarray, anchors: list[np.ndarray]) -> list[np.ndarray]:
    """Components of ``part`` given to the anchor (grown by ATTACH_PX) they overlap most."""
    out = [np.zeros(part.shape, bool) for _ in anchors]
    if not part.any() or not anchors:
        return out
    n, comp = cv2.connectedComponents(part.astype(np.uint8), connectivity=8)
    grown = [_grow(a, ATTACH_PX) if a.any() else a for a in anchors]
    for k in range(1, n):
        c = comp == k
        overlaps = [int((c & g).sum()) for g in grown]
        best = int(np.argmax(overlaps))
        if overlaps[best] > 0:
            out[best] |= c
    return out


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
    # the nearest head of every pixel within HEAD_MARGIN (distance to each head's mask)
    dist = np.stack([cv2.distanceTransform((~h).astype(np.uint8), cv2.DIST_L2, 3) for h in heads])
    nearest = dist.argmin(0)
    near = dist.min(0) <= HEAD_MARGIN
    out: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for name in HEAD_PARTS:
        if name not in index:
            continue
        pix = (labels == index[name]) & near
        for i in range(n):
            out[i][name] = pix & (nearest == i)
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
