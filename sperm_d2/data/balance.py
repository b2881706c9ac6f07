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
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sperm_d2.atomic import real_path
from sperm_d2.data.convert import AUGMENTED_FROM
from sperm_d2.data.image_checks import ImageProblem, image_size
from sperm_d2.data.imageops import affine_coords, rot90_coords, shift_hue
from sperm_d2.data.labelme_io import (
    LabelmeError,
    LabelmeFile,
    LabelmeShape,
    read_labelme_json,
    write_labelme_json,
)
from sperm_d2.data.labels import LabelMap, UnknownLabelError
from sperm_d2.data.manifest import (
    check_owned,
    hash_tree,
    nearest_existing,
    overlaps,
    read_manifest,
    write_manifest,
)
from sperm_d2.data.prepare import find_labelme_files
from sperm_d2.data.problems import ERROR, InputError, Problem, check_seed
from sperm_d2.data.shapes import ShapeProblem, shape_outlines
from sperm_d2.image_io import read_image, write_image

logger = logging.getLogger(__name__)

MANIFEST = ".balance_data_manifest.json"  # what a run wrote: replaced by the next run only
#: the most augmented copies of one image a --target may ask for: more only repeat the same few
#: transforms (and a typo'd --target would fill the disk)
MAX_COPIES_PER_IMAGE = 100
TOOL = "balance_data.py"


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
            "mask": s.mask,
        }
        for s in doc.shapes
    ]


def _outlines(
    doc: LabelmeFile, label_map: LabelMap
) -> list[tuple[LabelmeShape, int | None, np.ndarray]]:
    """(shape, group id, outline) of every shape a copy carries, as polygons. The pieces of a
    mask share a group id (a new one if it had none), so they stay one instance.

    Raises:
        LabelmeError: a shape of a class that gives no outline (a point, a line...): the copy
            would show that head as background.
    """
    out = []
    new_gid = max((s.group_id for s in doc.shapes if s.group_id is not None), default=-1) + 1
    for i, s in enumerate(doc.shapes):
        try:
            outlines = [p for p in shape_outlines(s) if len(p) >= 3]
        except ShapeProblem as e:
            if label_map.class_of(s.label) is None:
                continue  # an ignored label: nothing to follow
            raise LabelmeError(
                f"{doc.json_path}: shape {i} ({s.label!r}, shape_type {s.shape_type!r}): {e}"
            ) from None
        gid = s.group_id
        if gid is None and len(outlines) > 1:
            gid, new_gid = new_gid, new_gid + 1
        out += [(s, gid, p) for p in outlines]
    return out


def _copy(
    doc: LabelmeFile, out_dir: Path, stem: str, source: str, rng, label_map: LabelMap
) -> None:
    keep = _outlines(doc, label_map)
    img, reason = read_image(doc.image_path)
    if img is None:
        raise LabelmeError(f"{doc.json_path}: cannot read image {doc.image_path}: {reason}")
    aug, polys = augment_pair(img, [p for _, _, p in keep], rng)
    try:
        write_image(out_dir / f"{stem}.png", aug)
    except ValueError as e:
        raise LabelmeError(f"{doc.json_path}: cannot write an augmented copy ({e})") from None
    shapes = [
        {
            "label": s.label,
            "points": np.round(p, 2).tolist(),
            "group_id": gid,
            "shape_type": "polygon",
        }
        for (s, gid, _), p in zip(keep, polys)
    ]
    write_labelme_json(
        out_dir / f"{stem}.json",
        out_dir / f"{stem}.png",
        aug.shape[0],
        aug.shape[1],
        shapes,
        flags={AUGMENTED_FROM: source},
    )


def _check_paths(input_dir: Path, output_dir: Path, target: int | None, seed: int) -> None:
    if not input_dir.is_dir():
        what = "not a folder" if input_dir.exists() else "folder not found"
        raise InputError(f"--input {input_dir}: {what}")
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output {output_dir}: exists and is not a folder")
    if overlaps(input_dir, output_dir):
        raise InputError(f"--input {input_dir} and --output {output_dir} overlap; keep them apart")
    if target is not None and target < 1:
        raise InputError(f"--target {target}: expected at least 1 image per class")
    check_seed(seed)
    anchor = nearest_existing(output_dir.parent)
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise InputError(f"--output {output_dir}: cannot write in {anchor}")


def balance_labelme(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    label_map: LabelMap,
    *,
    target: int | None = None,
    seed: int = 0,
) -> dict:
    """Bring every class to ``target`` images (default: the largest class); returns counts.

    Only images whose labelme file reads cleanly and whose image decodes take part; the others
    are listed in ``skipped["lines"]`` (one line each; run ``tools/prepare_data.py`` for the full
    validation), counted in ``skipped["files"]``, with the folders that could not be read (their
    files skipped) in ``skipped["folders"]``. Images in a folder linked into ``input_dir`` are
    part of the input (:func:`sperm_d2.file_walk.walk_files`). The output folder is built beside
    ``output_dir`` and renamed into place, so it appears whole or not at all; an existing
    ``output_dir`` is replaced only if it is empty or holds an earlier run's files, unchanged
    (``.balance_data_manifest.json``).

    Raises:
        InputError: missing input, overlapping input/output, a foreign file in the way.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    _check_paths(input_dir, output_dir, target, seed)
    if output_dir.is_dir():
        owned = read_manifest(output_dir, MANIFEST)
        check_owned(output_dir, hash_tree(output_dir, skip=MANIFEST), owned, TOOL)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        counts = _balance(input_dir, staging, label_map, target, seed)
        write_manifest(staging, hash_tree(staging), MANIFEST, TOOL)
        if output_dir.exists():
            shutil.rmtree(output_dir)  # checked above: empty, or our own unchanged files
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def _balance(
    input_dir: Path, output_dir: Path, label_map: LabelMap, target: int | None, seed: int
) -> dict:
    by_class: dict[str, list[tuple[str, LabelmeFile]]] = {c: [] for c in label_map.classes}
    unwalked: list[Problem] = []
    roots: list[Path] = []  # the input's real path and the folders linked into it: the input
    paths = find_labelme_files(input_dir, problems=unwalked, real_roots=roots)
    # a folder it could not read is skipped with its files; a link loop loses no file (they are
    # listed under the folder it loops to): a warning, as in prepare_data.py
    for p in unwalked:
        if p.level != ERROR:
            logger.warning("%s", p)
    skipped = [f"{p.file}: {p.message}" for p in unwalked if p.level == ERROR]
    folders = len(skipped)
    if not paths:
        raise InputError(
            f"--input {input_dir}: no labelme *.json file found",
            [f"skipped {line}" for line in skipped],
        )
    for path in paths:
        rel = Path(os.path.relpath(path, input_dir)).as_posix()
        try:
            doc = read_labelme_json(path)
            if doc.image_path is None or not doc.image_path.is_file():
                raise LabelmeError(f"{path}: image {doc.image_path} not found")
            if not any(real_path(doc.image_path).is_relative_to(r) for r in roots):
                # prepare_data.py refuses it too: an imagePath may not read files elsewhere
                raise LabelmeError(
                    f"{path}: imagePath {doc.image_path} resolves outside the input folder"
                )
            try:
                w, h, _ = image_size(doc.image_path.read_bytes())
            except ImageProblem as e:
                raise LabelmeError(f"{path}: image {doc.image_path.name} {e}") from None
            cls = _image_class(doc, label_map)
            write_labelme_json(output_dir / rel, doc.image_path, h, w, _shape_dicts(doc), doc.flags)
        except (LabelmeError, UnknownLabelError, OSError) as e:
            skipped.append(f"{rel}: {' '.join(str(e).split())}")
            continue
        if cls is not None:
            by_class[cls].append((rel, doc))
    if len(skipped) - folders == len(paths):
        raise InputError(
            f"--input {input_dir}: none of {len(paths)} labelme file(s) usable",
            [f"skipped {line}" for line in skipped],
        )
    before = {c: len(v) for c, v in by_class.items()}
    goal = target if target is not None else max(before.values(), default=0)
    for cls, docs in by_class.items():  # a typo'd --target; the default goal is the data's
        if target is not None and docs and goal > len(docs) * (MAX_COPIES_PER_IMAGE + 1):
            raise InputError(
                f"--target {goal}: class {cls!r} has {len(docs)} image(s); more than "
                f"{MAX_COPIES_PER_IMAGE} augmented copies of each would only repeat them"
            )
    rng = np.random.default_rng(seed)
    added = {c: 0 for c in by_class}
    for cls, docs in by_class.items():
        need = max(0, goal - len(docs)) if docs else 0
        bar = tqdm(total=need, desc=f"balance {cls}", unit="img", disable=need < 50)
        i = 0
        while added[cls] < need and docs:
            rel, doc = docs[i % len(docs)]
            try:
                stem = f"aug_{cls}_{added[cls]:05d}"
                _copy(doc, output_dir / "augmented", stem, rel, rng, label_map)
            except (LabelmeError, OSError, cv2.error) as e:  # e.g. a format PIL reads, OpenCV not
                skipped.append(f"{rel}: no augmented copy: {' '.join(str(e).split())}")
                docs.remove((rel, doc))
                continue
            added[cls] += 1
            bar.update()
            i += 1
        bar.close()
    logger.info(
        "balanced %s: before %s, added %s, skipped %d", input_dir, before, added, len(skipped)
    )
    files = {"files": len(skipped) - folders, **({"folders": folders} if folders else {})}
    return {"before": before, "added": added, "skipped": {**files, "lines": skipped}}
