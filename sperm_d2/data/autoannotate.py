"""Automatic head outlines for single-cell crops (HuSHeM, SMIDS): class folders -> labelme JSON.

Stained heads are darker and bluer than the background. Per crop: a stain score (darkness plus
blueness in Lab, relative to the background median), an Otsu threshold, a morphological opening
that removes the thin tail and debris threads, the connected component nearest the centre,
holes filled, and a smoothed polygon. The result is written as labelme JSON next to nothing the
user owns (under the output folder) so a person can review and correct it in labelme.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from sperm_d2.atomic import real_path
from sperm_d2.data.labelme_io import write_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.problems import ERROR, WARNING, Problem, walk_problem
from sperm_d2.file_walk import walk_class_folders
from sperm_d2.image_io import is_debris, is_image_path, read_image

logger = logging.getLogger(__name__)


def stain_score(image_bgr: np.ndarray) -> np.ndarray:
    """Per-pixel stain strength (float32): darker and bluer than the image's median background."""
    lab = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    lum, blue = lab[..., 0], -lab[..., 2]  # Lab b* < 0 is blue; stained chromatin is blue-purple
    score = (np.median(lum) - lum) + 1.5 * (blue - np.median(blue))
    # Remove slow illumination/stain gradients: subtract a heavily smoothed background.
    background = cv2.GaussianBlur(cv2.medianBlur(score, 5), (0, 0), max(image_bgr.shape[:2]) / 4)
    return cv2.GaussianBlur(score - np.minimum(background, np.percentile(score, 75)), (0, 0), 1.0)


def segment_head(image_bgr: np.ndarray, min_area_frac: float = 0.004) -> np.ndarray | None:
    """Polygon (N, 2) float of the stained head nearest the crop centre, or ``None``."""
    h, w = image_bgr.shape[:2]
    score = stain_score(image_bgr)
    s8 = cv2.normalize(score, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    thr, core = cv2.threshold(s8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if score.max() - np.median(score) < 12:  # nothing clearly stained (e.g. an empty crop)
        return None
    # Hysteresis: Otsu finds the dark nucleus; the pale acrosome joins it through a lower level.
    bg = float(np.median(s8))
    weak = (s8 > bg + 0.45 * (thr - bg)).astype(np.uint8)
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    keep = np.unique(labels[core > 0])
    mask = (np.isin(labels, keep[keep > 0])).astype(np.uint8) * 255
    k = max(3, int(round(min(h, w) * 0.06)) | 1)  # wider than a tail, narrower than a head
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    best = _nearest_component(labels, stats, n, h, w, min_area_frac)
    if best == 0:
        return None
    head = _drop_necks((labels == best).astype(np.uint8) * 255, h, w, min_area_frac)
    if head is None:
        return None
    contours, _ = cv2.findContours(head, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    head = cv2.drawContours(np.zeros_like(head), contours, -1, 255, -1)  # fill holes
    head = cv2.GaussianBlur(head, (0, 0), 1.5)
    contours, _ = cv2.findContours(
        (head > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    c = cv2.approxPolyDP(c, 0.6, True).reshape(-1, 2).astype(np.float64)
    return c + 0.5 if len(c) >= 3 else None  # pixel centres -> continuous coordinates


def _nearest_component(labels, stats, n: int, h: int, w: int, min_area_frac: float) -> int:
    """Label of the component nearest the centre (0 = none close enough)."""
    best, best_d = 0, np.inf
    ys, xs = np.mgrid[0:h, 0:w]
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area_frac * h * w:
            continue
        comp = labels == i
        d = np.min(np.hypot(xs[comp] - w / 2, ys[comp] - h / 2))  # 0 if it covers the centre
        d = d - 0.02 * np.sqrt(stats[i, cv2.CC_STAT_AREA])  # prefer the larger of two near ones
        if d < best_d:
            best, best_d = i, d
    return best if best_d <= 0.3 * min(h, w) else 0


def _drop_necks(mask: np.ndarray, h: int, w: int, min_area_frac: float) -> np.ndarray | None:
    """Open with a disk scaled to the head's own half-width: cuts the midpiece, cytoplasm
    threads and touching neighbours, which are narrower than the head; keeps the central part."""
    radius = float(cv2.distanceTransform(mask, cv2.DIST_L2, 5).max())
    k = max(3, int(round(1.25 * radius)) | 1)
    opened = cv2.morphologyEx(
        mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    best = _nearest_component(labels, stats, n, h, w, min_area_frac)
    return (labels == best).astype(np.uint8) * 255 if best else None


def _annotate_one(item: tuple[Path, Path, str, str | None]) -> Problem | None:
    image_path, json_path, rel, label = item
    img, reason = read_image(image_path)
    if img is None:
        return Problem(ERROR, "unreadable_image", rel, f"cannot read image {image_path}: {reason}")
    h, w = img.shape[:2]
    shapes = []
    problem = None
    if label is not None:
        poly = segment_head(img)
        if poly is None:
            problem = Problem(
                WARNING, "no_head_found", rel, "no stained head found near the centre"
            )
        else:
            shapes = [{"label": label, "points": poly.tolist(), "shape_type": "polygon"}]
    write_labelme_json(json_path, image_path, h, w, shapes, flags={"auto_annotated": True})
    return problem


def annotate_class_folders(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    label_map: LabelMap,
    workers: int = 1,
    image_roots: Sequence[str | os.PathLike] = (),
    real_roots: list[Path] | None = None,
) -> list[Problem]:
    """Write one labelme JSON per crop under ``out_dir/<folder>/``; returns the problems.

    The class comes from the folder name via ``label_map``; folders mapped to null give JSONs
    without shapes (negatives). A folder the map does not know is an error (its files skipped),
    as is an image outside every class folder (it has no class), a crop that links to a
    file outside the input and ``image_roots``, a folder that could not be read and a link to
    a folder listed under another class folder; a class folder without images and a link loop
    (not followed) are warnings.

    A folder the user linked into ``input_dir`` (a class folder or one inside it) is part of
    the input: its real path is allowed like ``input_dir``'s and, when ``real_roots`` is given,
    appended to it (:func:`sperm_d2.file_walk.walk_files`).
    """
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    items, problems = [], []
    entries = sorted(p for p in input_dir.iterdir() if not is_debris(p.name))
    for loose in entries:
        if is_image_path(loose) and not loose.is_dir():
            problems.append(
                Problem(
                    ERROR,
                    "no_class_folder",
                    loose.name,
                    "image outside every class folder, skipped (--from-folders takes an image's "
                    "class from the folder it lies in)",
                )
            )
    folders = [p for p in entries if p.is_dir()]
    # walked as one tree: a crop reached from two class folders is listed under one only
    walk = walk_class_folders(
        input_dir, [f.name for f in folders if label_map.knows(f.name)], skip=is_debris
    )
    roots = walk.real_roots + [real_path(r) for r in image_roots]  # input_dir's is the first
    if real_roots is not None:
        real_roots += walk.real_roots
    for folder in folders:
        if not label_map.knows(folder.name):
            problems.append(
                Problem(
                    ERROR,
                    "unknown_label",
                    folder.name,
                    f"folder name not in label map {label_map.source}, skipped",
                )
            )
            continue
        cls = label_map.class_of(folder.name)
        images, others = 0, 0
        unwalked = walk.problems.get(folder.name, [])
        problems += [walk_problem(w, w.path.relative_to(input_dir).as_posix()) for w in unwalked]
        for f in walk.files[folder.name]:
            # not only regular files: a broken symlink or FIFO named like an image is listed
            # as unreadable by _annotate_one (read_image says why), not dropped unseen
            if not is_image_path(f):
                others += 1
                continue
            rel = f.relative_to(input_dir)
            target = real_path(f)  # Path.resolve raises on a symlink loop
            if target.exists() and not any(target.is_relative_to(r) for r in roots):
                problems.append(_escape(rel.as_posix(), f, target, input_dir))
                continue
            images += 1
            items.append(
                (
                    target,
                    out_dir / rel.with_suffix(".json"),
                    rel.as_posix(),
                    None if cls is None else folder.name,
                )
            )
        if not images:
            ignored = f" ({others} other file(s) ignored)" if others else ""
            problems.append(
                Problem(
                    WARNING,
                    "empty_class_folder",
                    folder.name,
                    f"class folder holds no image{ignored}",
                )
            )
    bar = dict(total=len(items), desc="auto-annotate", unit="crop", disable=len(items) < 100)
    if workers > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
            found = list(tqdm(pool.map(_annotate_one, items, chunksize=16), **bar))
    else:
        found = [_annotate_one(it) for it in tqdm(items, **bar)]
    problems += [p for p in found if p is not None]
    logger.info(
        "auto-annotated %d crops from %s (%d problems)", len(items), input_dir, len(problems)
    )
    return problems


def _escape(rel: str, crop: Path, target: Path, input_dir: Path) -> Problem:
    """A crop that is a symbolic link to a file outside the input (and every image root)."""
    # only a link can lie outside: the folders linked into the input are part of it
    how = "links to" if crop.is_symlink() else "resolves to"
    return Problem(
        ERROR,
        "path_escape",
        rel,
        f"{how} {target}, outside --input {input_dir}, skipped; copy the image in or add its "
        "folder with --image-root",
    )
