"""Offline class balancing: multiply minority-class images with augmented copies (labelme out).

Like the study behind this project (54 good images augmented up to 650), but leak-free: every
copy carries the labelme flag ``augmented_from`` = its source file, and ``prepare_dataset``
splits by source, so a copy always lands in the same split as its original.

The output folder is a complete labelme dataset: a JSON for every original (pointing at the
original image, which is neither copied nor modified) plus PNG + JSON for every copy. Copies get
a random geometric transform (flips, 90-degree turns, small rotation/scale) applied to image and
polygons alike, and a photometric one (blur, brightness/contrast, stain hue).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from sperm_d2.atomic import write_bytes_atomic
from sperm_d2.data.convert import AUGMENTED_FROM
from sperm_d2.data.geometry import shape_to_polygon
from sperm_d2.data.imageops import affine_coords, rot90_coords, shift_hue
from sperm_d2.data.labelme_io import (
    LabelmeError,
    LabelmeFile,
    read_labelme_json,
    write_labelme_json,
)
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import find_labelme_files

logger = logging.getLogger(__name__)


def augment_pair(
    image: np.ndarray, polygons: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random geometric + photometric transform of a BGR image and its (N, 2) polygons."""
    h, w = image.shape[:2]
    polys = [p.astype(np.float64) for p in polygons]
    if rng.random() < 0.5:
        image, polys = image[:, ::-1], [np.c_[w - p[:, 0], p[:, 1]] for p in polys]
    if rng.random() < 0.5:
        image, polys = image[::-1], [np.c_[p[:, 0], h - p[:, 1]] for p in polys]
    k = int(rng.integers(4))
    image, polys = np.rot90(image, k), [rot90_coords(p, h, w, k) for p in polys]
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(
        ((w - 1) / 2, (h - 1) / 2), rng.uniform(-15, 15), rng.uniform(0.9, 1.1)
    )
    image = cv2.warpAffine(
        np.ascontiguousarray(image),
        m,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    polys = [affine_coords(p, m) for p in polys]
    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
    out = out * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)  # contrast, brightness
    out = shift_hue(np.clip(out, 0, 255).astype(np.uint8), rng.uniform(-8, 8))
    return out, polys


def _image_class(doc: LabelmeFile, label_map: LabelMap) -> str | None:
    counts = Counter(c for s in doc.shapes if (c := label_map.class_of(s.label)) is not None)
    return counts.most_common(1)[0][0] if counts else None


def _shape_dicts(doc: LabelmeFile) -> list[dict]:
    return [
        {
            "label": s.label,
            "points": s.points,
            "group_id": s.group_id,
            "shape_type": s.shape_type,
            "flags": s.flags,
        }
        for s in doc.shapes
    ]


def _copy(doc: LabelmeFile, out_dir: Path, stem: str, source: str, rng) -> None:
    img = cv2.imread(str(doc.image_path), cv2.IMREAD_COLOR)
    if img is None:
        raise LabelmeError(f"{doc.json_path}: cannot read image {doc.image_path}")
    keep = [(s, shape_to_polygon(s.shape_type, s.points)) for s in doc.shapes]
    keep = [(s, p) for s, p in keep if p is not None and len(p) >= 3]  # points/lines cannot follow
    aug, polys = augment_pair(img, [p for _, p in keep], rng)
    ok, png = cv2.imencode(".png", aug)
    write_bytes_atomic(out_dir / f"{stem}.png", png.tobytes())
    shapes = [
        {
            "label": s.label,
            "points": np.round(p, 2).tolist(),
            "group_id": s.group_id,
            "shape_type": "polygon",
        }
        for (s, _), p in zip(keep, polys)
    ]
    write_labelme_json(
        out_dir / f"{stem}.json",
        out_dir / f"{stem}.png",
        aug.shape[0],
        aug.shape[1],
        shapes,
        flags={AUGMENTED_FROM: source},
    )


def balance_labelme(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    label_map: LabelMap,
    target: int | None = None,
    seed: int = 0,
) -> dict[str, dict[str, int]]:
    """Bring every class to ``target`` images (default: the largest class); returns counts.

    Only images whose labelme file reads cleanly and has an image file take part; others are
    counted as skipped (run ``tools/prepare_data.py`` for the full validation).
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    by_class: dict[str, list[tuple[str, LabelmeFile]]] = {c: [] for c in label_map.classes}
    skipped = 0
    for path in find_labelme_files(input_dir, exclude=[output_dir]):
        rel = Path(os.path.relpath(path, input_dir)).as_posix()
        try:
            doc = read_labelme_json(path)
            if doc.image_path is None or not doc.image_path.is_file():
                raise LabelmeError(f"{path}: image not found")
            with Image.open(doc.image_path) as im:  # header only: the real size
                w, h = im.size
            write_labelme_json(output_dir / rel, doc.image_path, h, w, _shape_dicts(doc), doc.flags)
            cls = _image_class(doc, label_map)
        except (LabelmeError, KeyError, OSError) as e:
            logger.warning("skipped: %s", e)
            skipped += 1
            continue
        if cls is not None:
            by_class[cls].append((rel, doc))
    before = {c: len(v) for c, v in by_class.items()}
    goal = target if target is not None else max(before.values(), default=0)
    rng = np.random.default_rng(seed)
    added = {c: 0 for c in by_class}
    for cls, docs in by_class.items():
        need = max(0, goal - len(docs)) if docs else 0
        for i in tqdm(range(need), desc=f"balance {cls}", unit="img", disable=need < 50):
            rel, doc = docs[i % len(docs)]
            stem = f"aug_{cls}_{i:05d}"
            _copy(doc, output_dir / "augmented", stem, rel, rng)
            added[cls] += 1
    logger.info("balanced %s: before %s, added %s, skipped %d", input_dir, before, added, skipped)
    return {"before": before, "added": added, "skipped": {"files": skipped}}
