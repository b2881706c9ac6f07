"""Assemble COCO instance dicts from converted files; ids are global and deterministic."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import orjson

from sperm_d2.data.convert import FileResult
from sperm_d2.data.labels import LabelMap
from sperm_d2.errors import InputError

NO_INSTANCE = "none"  # image-level class of a negative image
MIXED = "mixed"


def image_class(result: FileResult) -> str:
    """Image-level class for stratification: the majority class, "none" or "mixed" on a tie."""
    counts = Counter(inst["class"] for inst in result.instances)
    if not counts:
        return NO_INSTANCE
    top = counts.most_common()
    return MIXED if len(top) > 1 and top[0][1] == top[1][1] else top[0][0]


def assign_ids(results: Sequence[FileResult]) -> list[tuple[dict, list[dict]]]:
    """(image entry, annotations) per result in order; image ids 1..N, annotation ids 1..M."""
    out, ann_id = [], 0
    for image_id, res in enumerate(results, start=1):
        image = {
            "id": image_id,
            "file_name": res.file_name,
            "width": res.width,
            "height": res.height,
            "labelme": res.json_rel,
        }
        anns = []
        for inst in res.instances:
            ann_id += 1
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": inst["category_id"],
                    "segmentation": inst["segmentation"],
                    "area": inst["area"],
                    "bbox": inst["bbox"],
                    "iscrowd": 0,
                    # kept (parts of one sperm share it): only where the annotation had one
                    **({"group_id": inst["group_id"]} if "group_id" in inst else {}),
                }
            )
        out.append((image, anns))
    return out


def coco_dict(
    entries: Sequence[tuple[dict, list[dict]]], label_map: LabelMap, description: str
) -> dict:
    """A COCO instances dict from (image, annotations) pairs."""
    return {
        "info": {"description": description, "version": "1.0"},
        "licenses": [],
        "images": [img for img, _ in entries],
        "annotations": [a for _, anns in entries for a in anns],
        "categories": label_map.coco_categories(),
    }


def _as_json_dumps(out: bytes) -> bool:
    """Whether orjson's ``out`` is certainly what ``json.dumps`` writes: no non-ASCII text or DEL
    (json escapes them), no null (json refuses NaN and inf, which orjson writes as null), no float
    that json writes in exponent form (orjson: 1e-05 as 0.00001; exponents always signed, e.g.
    1e+16, written alike by both but not checked). A string that merely looks like one of these
    only costs the slower path."""
    if not out.isascii() or b"\x7f" in out or b"null" in out or b"0.0000" in out:
        return False
    for marker in (b"e+", b"e-"):
        i = out.find(marker)
        while i > 0:
            if 48 <= out[i - 1] <= 57:  # a digit before it: a number in exponent form
                return False
            i = out.find(marker, i + 2)
    return True


def coco_bytes(coco: dict) -> bytes:
    """A COCO dict as compact, strict JSON bytes: exactly ``json.dumps(coco, separators=(",",
    ":"), allow_nan=False)`` in UTF-8. orjson writes them (~10x faster) when its output is
    certain to be the same (:func:`_as_json_dumps`); otherwise the standard library does, which
    also raises as before on NaN, numpy scalars or non-text keys."""
    try:
        out = orjson.dumps(coco)
    except TypeError:  # numpy scalars, non-text keys, ints over 64 bits, deep nesting...
        out = None
    if out is None or not _as_json_dumps(out):
        # ``json.dumps`` to a string uses the C encoder; ``json.dump`` to a file falls back to
        # the pure-Python one (~10x slower on big files)
        out = json.dumps(coco, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return out


def split_image_paths(split_json: str | os.PathLike) -> list[Path]:
    """The image paths of a COCO split ``DATA_ROOT/annotations/<split>.json`` (its file names are
    relative to ``DATA_ROOT``, the folder above ``annotations/``)."""
    split_json = Path(split_json)
    root = (
        split_json.parent.parent if split_json.parent.name == "annotations" else split_json.parent
    )
    try:
        images = json.loads(split_json.read_text(encoding="utf-8"))["images"]
        return [Path(os.path.normpath(root / im["file_name"])) for im in images]
    except (ValueError, KeyError, TypeError) as e:  # not JSON, or not a COCO split
        raise InputError(f"{split_json}: not a COCO split ({type(e).__name__}: {e})") from None
