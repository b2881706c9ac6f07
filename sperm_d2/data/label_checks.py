"""Annotated sperm whose head parts contradict anatomy, found from their polygons alone.

A head has one nucleus. A sperm annotated with no acrosome and a nucleus drawn as two or more
polygons is, on the images of the Sperm Parsing data, nearly always an acrosome labelled
"Nucleus": the lighter cap in front of the dark nucleus drawn as a second nucleus polygon
(README Results says how often). Its annotated acrosome share (0 %) is then wrong whatever a model
predicts. ``prepare_data.py`` warns about such sperm file by file (so a lab can fix them in
labelme), and the parts benchmark scores every annotated head as the annotation stands and
reports the acrosome share also without them, so a reader sees how much of the error is the
annotation's. Pure Python (no numpy).
"""

from __future__ import annotations

from typing import Iterable, Sequence


def _polygons(segmentation) -> int:
    """Polygons of a COCO segmentation that enclose an area (3 points or more); RLE counts 1."""
    if isinstance(segmentation, list):
        return sum(len(p) >= 6 for p in segmentation)
    return 1 if segmentation else 0


def split_nuclei(parts: Iterable[tuple[str, object, object]]) -> dict[int, int]:
    """{group_id: nucleus polygons} of the sperm with no acrosome and a nucleus of 2+ polygons.

    ``parts`` are (class name, group_id, COCO segmentation) per annotated part; a sperm's polygons
    of one class may come in several parts. Parts without an integer group_id belong to no sperm
    and are left out.
    """
    nuclei: dict[int, int] = {}
    with_acrosome: set[int] = set()
    for name, gid, segmentation in parts:
        if not isinstance(gid, int) or isinstance(gid, bool):
            continue
        if name == "acrosome" and _polygons(segmentation):
            with_acrosome.add(gid)
        elif name == "nucleus":
            nuclei[gid] = nuclei.get(gid, 0) + _polygons(segmentation)
    return {gid: n for gid, n in nuclei.items() if n >= 2 and gid not in with_acrosome}


def split_nucleus_groups(annotations: Sequence[dict], class_names: Sequence[str]) -> set[int]:
    """group_ids of a dataset record's annotated sperm with no acrosome and a nucleus of 2+
    polygons (:func:`split_nuclei`).

    ``annotations`` are a record's (``category_id`` 0-based into ``class_names``, a ``group_id``
    linking one sperm's parts, as the converter writes them); crowd annotations are left out.
    Empty when ``class_names`` has no acrosome or no nucleus class (nothing to check).
    """
    if "acrosome" not in class_names or "nucleus" not in class_names:
        return set()
    return set(
        split_nuclei(
            (class_names[int(a["category_id"])], a.get("group_id"), a.get("segmentation"))
            for a in annotations
            if not a.get("iscrowd", 0)
        )
    )
