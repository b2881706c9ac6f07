"""Re-split a prepared COCO dataset to follow another dataset's split, image by image.

Two label maps over the same labelme files (heads for the detector, parts for the part
segmenter) stratify differently, so ``prepare_data.py`` with the same seed gives them different
splits. The part model must hold out the same test fields as the detector it runs beside: its
annotations are prepared as one split and divided here by the ``labelme`` file each image came
from, as the reference dataset divided them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sperm_d2.atomic import write_json_atomic
from sperm_d2.errors import InputError


def reference_splits(reference_root: str | os.PathLike) -> dict[str, set[str]]:
    """Split name -> the ``labelme`` files of its images, from ``annotations/*.json``."""
    out = {}
    for path in sorted(Path(reference_root, "annotations").glob("*.json")):
        if path.name == "report.json":
            continue
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
        out[path.stem] = {im["labelme"] for im in images}
    return out


def split_like(coco: dict, splits: dict[str, set[str]]) -> dict[str, dict]:
    """``coco`` divided into the given splits by each image's ``labelme`` file.

    Raises ``InputError`` naming an image of ``coco`` that no split holds (the two datasets were
    not prepared from the same files).
    """
    owner = {name: split for split, names in splits.items() for name in names}
    missing = sorted(im["labelme"] for im in coco["images"] if im["labelme"] not in owner)
    if missing:
        raise InputError(f"{missing[0]} (and {len(missing) - 1} more) in no reference split")
    out = {}
    for split in splits:
        images = [im for im in coco["images"] if owner[im["labelme"]] == split]
        ids = {im["id"] for im in images}
        anns = [a for a in coco["annotations"] if a["image_id"] in ids]
        out[split] = {**coco, "images": images, "annotations": anns}
        out[split]["info"] = {**coco.get("info", {}), "description": split}
    return out


def follow_split(
    root: str | os.PathLike, reference_root: str | os.PathLike, source: str = "train"
) -> dict[str, int]:
    """Rewrite ``root/annotations/<split>.json`` for every split of ``reference_root``, from
    ``root/annotations/<source>.json`` (a dataset prepared with ``--split 1``). Returns the
    images per split."""
    ann = Path(root, "annotations")
    coco = json.loads((ann / f"{source}.json").read_text(encoding="utf-8"))
    parts = split_like(coco, reference_splits(reference_root))
    for split, data in parts.items():
        write_json_atomic(ann / f"{split}.json", data)
    return {split: len(d["images"]) for split, d in parts.items()}
