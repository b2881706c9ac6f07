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

from sperm_d2.masks import Crop, mask_box, mask_crop
from sperm_d2.parts.targets import PART_CLASSES, head_part_codes

#: px a head's mask is grown by to collect its head parts
HEAD_MARGIN = 2
#: px a head (or midpiece) is grown by to find the midpiece (or tail) components touching it
ATTACH_PX = 6


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def _window(
    anchor: Crop, shape: tuple[int, int], px: int
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The box around an anchor's pixels grown by ``px`` within an image of ``shape``, and the
    anchor laid out in it."""
    (y0, x0), tight = mask_crop(anchor[1], anchor[0])
    if not tight.size:
        return (slice(0, 0), slice(0, 0)), tight
    y1, x1 = y0 + tight.shape[0], x0 + tight.shape[1]
    box = (
        slice(max(y0 - px, 0), min(y1 + px, shape[0])),
        slice(max(x0 - px, 0), min(x1 + px, shape[1])),
    )
    local = np.zeros((box[0].stop - box[0].start, box[1].stop - box[1].start), bool)
    top, left = y0 - box[0].start, x0 - box[1].start
    local[top : top + tight.shape[0], left : left + tight.shape[1]] = tight
    return box, local


def _attach(
    part: np.ndarray, anchors: list[Crop | None], out: np.ndarray, value: int
) -> list[Crop | None]:
    """Components of ``part`` given to the anchor (grown by ATTACH_PX) they overlap most: written
    as ``value`` into ``out[i]`` (anchor ``i``'s label map); returns what each anchor got, as a
    crop (``None`` for nothing)."""
    got: list[Crop | None] = [None] * len(anchors)
    if not anchors:
        return got
    n, comp, stats, _ = cv2.connectedComponentsWithStats(part.astype(np.uint8), connectivity=8)
    # overlaps[i, k]: pixels of component k inside anchor i grown, counted in the box around
    # the anchor (every pixel within ATTACH_PX of it lies there: growing it there is exact)
    overlaps = np.zeros((len(anchors), n), np.int64)
    for i, a in enumerate(anchors):
        if a is not None:
            box, local = _window(a, part.shape, ATTACH_PX)
            if local.size:
                overlaps[i] = np.bincount(comp[box][_grow(local, ATTACH_PX)], minlength=n)
    overlaps[:, 0] = 0  # label 0 is the background, no component
    mine: dict[int, list[int]] = {}
    for k in np.flatnonzero(overlaps.max(0) > 0):  # first anchor on a tie
        mine.setdefault(int(overlaps[:, k].argmax()), []).append(int(k))
    for i, ks in mine.items():  # each component written in its own box
        for k in ks:
            x, y, w, h = stats[k, :4]
            cut = (slice(y, y + h), slice(x, x + w))
            out[i][cut][comp[cut] == k] = value
        x0, y0 = stats[ks, 0].min(), stats[ks, 1].min()
        x1, y1 = (stats[ks, 0] + stats[ks, 2]).max(), (stats[ks, 1] + stats[ks, 3]).max()
        got[i] = ((int(y0), int(x0)), out[i][y0:y1, x0:x1] == value)
    return got


def assign_part_labels(
    labels: np.ndarray, heads: np.ndarray, class_names: Sequence[str] = PART_CLASSES
) -> np.ndarray:
    """Per head of ``heads`` (N, H, W) bool, its parts as a label map of its own: (N, H, W)
    uint8, 0 none, 1 + i for ``class_names[i]``, from a field's label map (same coding). Every
    step but the component labelling works in the box around a head or a component, so a field
    costs what its sperm do, and no per-part mask of the whole image is made."""
    heads = np.asarray(heads, bool)
    n = len(heads)
    out = np.zeros((n, *labels.shape), np.uint8)
    if n == 0:
        return out
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
    ids = head_part_codes(class_names)
    cores: list[Crop | None] = []  # each head's mask with its head parts
    for i, (h, box) in enumerate(zip(heads, boxes)):
        if box is None:  # a head's parts lie within HEAD_MARGIN of it: inside its box
            cores.append(None)
            continue
        mine = (nearest[box] == i) & (dist[box] <= HEAD_MARGIN)
        own = np.where(mine & np.isin(labels[box], ids), labels[box], 0).astype(np.uint8)
        out[i][box] = own
        cores.append(((box[0].start, box[1].start), h[box] | (own > 0)))
    mids: list[Crop | None] = [None] * n
    if "midpiece" in index:
        mids = _attach(labels == index["midpiece"], cores, out, index["midpiece"])
    if "tail" in index:
        anchors = [m if m is not None else c for m, c in zip(mids, cores)]
        _attach(labels == index["tail"], anchors, out, index["tail"])
    return out


def part_masks(
    stack: np.ndarray,
    class_names: Sequence[str] = PART_CLASSES,
    names: Sequence[str] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Per head of a per-head label stack (N, H, W) (:func:`assign_part_labels`, 1 + i for
    ``class_names[i]``), part name -> (H, W) bool mask for each of ``names`` (default: every
    class; empty masks included)."""
    wanted = list(class_names) if names is None else list(names)
    codes = {name: k + 1 for k, name in enumerate(class_names)}
    return [{name: s == codes[name] for name in wanted} for s in stack]


def assign_parts(
    labels: np.ndarray, heads: np.ndarray, class_names: Sequence[str] = PART_CLASSES
) -> list[dict[str, np.ndarray]]:
    """Per head of ``heads`` (N, H, W) bool, its parts: part name -> (H, W) bool (the masks of
    :func:`assign_part_labels`, for callers that want them one by one)."""
    return part_masks(assign_part_labels(labels, heads, class_names), class_names)
