"""Part masks from COCO polygons: the segmenter's label maps and the parts of each annotated sperm.

numpy + pycocotools (no torch). A label map holds 0 for background and ``1 + i`` for the part
class ``i`` of ``SPERM.CLASSES``. Where parts overlap, the later part of :data:`PAINT_ORDER` wins:
the tail and midpiece lie under the head, and a vacuole over the nucleus over the acrosome (the
annotators drew vacuoles inside the nucleus, and the nucleus often over the acrosome's edge).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_util

from sperm_d2.data.labels import PART_CLASSES  # noqa: F401 (re-exported)
from sperm_d2.masks import segmentation_to_rle

#: the parts that make up the head
HEAD_PARTS = ("acrosome", "nucleus", "vacuole")
#: painting order, later over earlier; classes not named here are painted first
PAINT_ORDER = ("tail", "midpiece", "acrosome", "nucleus", "vacuole")


def head_part_codes(class_names: Sequence[str]) -> list[int]:
    """The label-map codes (1 + i for ``class_names[i]``) of the head parts among
    ``class_names``, in their order."""
    return [i + 1 for i, name in enumerate(class_names) if name in HEAD_PARTS]


def polygons_mask(segmentation: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """(H, W) bool of the union of COCO polygons ``[[x0, y0, x1, y1, ...], ...]``, rasterised as
    COCO evaluation does (pycocotools), so targets and ground truth agree pixel for pixel."""
    polys = [list(map(float, p)) for p in segmentation if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), bool)
    return mask_util.decode(segmentation_to_rle(polys, height, width)).astype(bool)


def paint_rank(class_names: Sequence[str]) -> list[int]:
    """Class indices in painting order (unknown classes first, in their own order)."""
    order = {name: k for k, name in enumerate(PAINT_ORDER)}
    return sorted(range(len(class_names)), key=lambda i: order.get(class_names[i], -1))


def label_map(
    annotations: Sequence[dict], class_names: Sequence[str], height: int, width: int
) -> np.ndarray:
    """(H, W) uint8 label map of a dataset record's annotations (``category_id`` 0-based, as
    detectron2's loaded records hold it; ``segmentation`` polygons)."""
    out = np.zeros((height, width), np.uint8)
    by_class: dict[int, list] = {}
    for ann in annotations:
        if ann.get("iscrowd", 0) or not isinstance(ann.get("segmentation"), list):
            continue
        by_class.setdefault(int(ann["category_id"]), []).append(ann["segmentation"])
    for c in paint_rank(class_names):
        for seg in by_class.get(c, []):
            out[polygons_mask(seg, height, width)] = c + 1
    return out


def sperm_parts(
    annotations: Sequence[dict], class_names: Sequence[str], height: int, width: int
) -> dict[int, dict[str, np.ndarray]]:
    """group_id -> part name -> (H, W) bool mask: the annotated parts of each sperm (annotations
    without a group_id are left out). Overlaps are resolved as in :func:`label_map`."""
    groups: dict[int, list[dict]] = {}
    for ann in annotations:
        if ann.get("group_id") is not None and isinstance(ann.get("segmentation"), list):
            groups.setdefault(int(ann["group_id"]), []).append(ann)
    out = {}
    for gid, anns in groups.items():
        labels = label_map(anns, class_names, height, width)
        out[gid] = {
            name: labels == i + 1 for i, name in enumerate(class_names) if (labels == i + 1).any()
        }
    return out
