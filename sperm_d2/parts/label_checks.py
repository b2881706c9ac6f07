"""Annotated sperm whose head parts contradict anatomy, found from their polygons alone.

A head has one nucleus. A sperm annotated with no acrosome and a nucleus drawn as two or more
polygons is, on the images of the Sperm Parsing data, nearly always an acrosome labelled
"Nucleus": the lighter cap in front of the dark nucleus drawn as a second nucleus polygon
(README Results says how often). Its annotated acrosome share (0 %) is then wrong whatever a model
predicts: the parts benchmark scores every annotated head as the annotation stands and reports
the acrosome share also without these heads, so a reader sees how much of the error is the
annotation's. Pure Python (no numpy).
"""

from __future__ import annotations

from typing import Sequence


def _polygons(segmentation) -> int:
    """Polygons of a COCO segmentation that enclose an area (3 points or more); RLE counts 1."""
    if isinstance(segmentation, list):
        return sum(len(p) >= 6 for p in segmentation)
    return 1 if segmentation else 0


def split_nucleus_groups(annotations: Sequence[dict], class_names: Sequence[str]) -> set[int]:
    """group_ids of the annotated sperm with no acrosome and a nucleus of 2+ polygons.

    ``annotations`` are a dataset record's (``category_id`` 0-based into ``class_names``, a
    ``group_id`` linking one sperm's parts, as the converter writes them); a group's polygons
    of one class may be spread over several annotations. Empty when ``class_names`` has no
    acrosome or no nucleus class (nothing to check).
    """
    if "acrosome" not in class_names or "nucleus" not in class_names:
        return set()
    acrosome, nucleus = class_names.index("acrosome"), class_names.index("nucleus")
    nuclei: dict[int, int] = {}
    with_acrosome: set[int] = set()
    for ann in annotations:
        gid = ann.get("group_id")
        if gid is None or ann.get("iscrowd", 0):
            continue
        c = int(ann["category_id"])
        if c == acrosome and _polygons(ann.get("segmentation")):
            with_acrosome.add(int(gid))
        elif c == nucleus:
            nuclei[int(gid)] = nuclei.get(int(gid), 0) + _polygons(ann.get("segmentation"))
    return {gid for gid, n in nuclei.items() if n >= 2 and gid not in with_acrosome}
