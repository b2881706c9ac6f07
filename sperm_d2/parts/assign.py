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

from sperm_d2.masks import mask_box
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
    if not anchors:
        return out
    n, comp, stats, _ = cv2.connectedComponentsWithStats(part.astype(np.uint8), connectivity=8)
    # overlaps[i, k]: pixels of component k inside anchor i grown, counted in the box around
    # the anchor (every pixel within ATTACH_PX of it lies there: growing it there is exact)
    overlaps = np.zeros((len(anchors), n), np.int64)
    for i, a in enumerate(anchors):
        box = mask_box(a, ATTACH_PX)
        if box is not None:
            overlaps[i] = np.bincount(comp[box][_grow(a[box], ATTACH_PX)], minlength=n)
    overlaps[:, 0] = 0  # label 0 is the background, no component
    for k in np.flatnonzero(overlaps.max(0) > 0):  # each component written in its own box
        x, y, w, h = stats[k, :4]
        cut = (slice(y, y + h), slice(x, x + w))
        out[int(overlaps[:, k].argmax())][cut] |= comp[cut] == k  # first anchor on a tie
    return out


def assign_parts(
    labels: np.ndarray, heads: np.ndarray, class_names: Sequence[str] = PART_CLASSES
) -> list[dict[str, np.ndarray]]:
    """Per head of ``heads`` (N, H, W) bool, its parts: part name -> (H, W) bool, from a label map
    (0 background, 1 + i for ``class_names[i]``). Every step but the component labelling works in
    the box around a head or a component, so a field costs what its sperm do."""
    heads = np.asarray(heads, bool)
    n = len(heads)
    if n == 0:
        return []
    index = {name: i + 1 for i, name in enumerate(class_names)}
    # the nearest head of every pixel within HEAD_MARGIN (distance to each head's mask, computed
    # in the box around the head; the first head wins a tie)
    dist = np.full(labels.shape, np.inf, np.float32)
    nearest = np.full(labels.shape, -1, np.int32)
    boxes = [mask_box(h, HEAD_MARGIN + 1) for h in heads]
    for i, (h, box) in enumerate(zip(heads, boxes)):
        if box is None:
            continue
        d = cv2.distanceTransform((~h[box]).astype(np.uint8), cv2.DIST_L2, 3)
        closer = d < dist[box]
        dist[box][closer] = d[closer]
        nearest[box][closer] = i
    out: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    head_masks = []
    names = [name for name in HEAD_PARTS if name in index]
    for i, (h, box) in enumerate(zip(heads, boxes)):
        core = h.copy()
        for name in names:
            out[i][name] = np.zeros(labels.shape, bool)
        if box is not None:  # a head's parts lie within HEAD_MARGIN of it: inside its box
            mine = (nearest[box] == i) & (dist[box] <= HEAD_MARGIN)
            for name in names:
                out[i][name][box] = (labels[box] == index[name]) & mine
                core[box] |= out[i][name][box]
        head_masks.append(core)
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
