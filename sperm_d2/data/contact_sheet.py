"""Contact sheets: a grid of labelme overlays per folder, for a person to review at a glance.

Used after auto-annotation (``tools/prepare_data.py --from-folders --contact-sheet out.png``):
each tile shows one crop with its outlines (yellow) and its index, or NONE when it has none.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from sperm_d2.data.labelme_io import LabelmeError, read_labelme_json
from sperm_d2.image_io import fit_within, read_image, tile_grid, write_image

logger = logging.getLogger(__name__)


def _tile(json_path: Path, size: int, index: int) -> np.ndarray:
    tile = np.zeros((size, size, 3), np.uint8)
    try:
        doc = read_labelme_json(json_path)
        img = read_image(doc.image_path)[0] if doc.image_path else None
    except LabelmeError:
        doc, img = None, None
    if img is not None:
        s = size / max(img.shape[:2])
        img = fit_within(img, size)
        tile[: img.shape[0], : img.shape[1]] = img
        for shape in doc.shapes:
            pts = np.round(np.asarray(shape.points) * s).astype(np.int32)
            cv2.polylines(tile, [pts], True, (0, 255, 255), 1, cv2.LINE_AA)
        if not doc.shapes:
            cv2.putText(tile, "NONE", (4, size // 2), 0, 0.5, (0, 0, 255), 2)
    cv2.putText(tile, str(index), (2, 12), 0, 0.4, (0, 0, 0), 1)
    return tile


def write_contact_sheets(
    labelme_dir: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    tile: int = 120,
    per_row: int = 10,
    max_per_folder: int = 100,
) -> list[Path]:
    """One sheet per sub-folder of ``labelme_dir`` (``<out stem>_<folder>.png``), evenly sampled
    down to ``max_per_folder`` tiles (0 = all); tile numbers are positions in the sorted folder."""
    labelme_dir, out_png = Path(labelme_dir), Path(out_png)
    folders = sorted(p for p in labelme_dir.iterdir() if p.is_dir()) or [labelme_dir]
    written = []
    for folder in folders:
        files = sorted(folder.glob("*.json"))
        if not files:
            continue
        idx = np.arange(len(files))
        if max_per_folder and len(files) > max_per_folder:
            idx = np.unique(np.linspace(0, len(files) - 1, max_per_folder).astype(int))
        tiles = [_tile(files[i], tile, int(i)) for i in idx]
        path = out_png.with_name(f"{out_png.stem}_{folder.name}{out_png.suffix or '.png'}")
        write_image(path, tile_grid(tiles, per_row))
        written.append(path)
    logger.info("contact sheets: %s", [str(p) for p in written])
    return written
