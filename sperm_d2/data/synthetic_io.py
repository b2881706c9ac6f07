"""Write synthetic scenes (sperm_d2.data.synthetic) to disk as PNG + labelme JSON pairs.

Heads are labelled with their kind (``normal``, ``tapered``, ``pyriform``, ``amorphous``), which the
default label map sends to good/bad, so the synthetic data also exercises the label map.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sperm_d2.atomic import write_bytes_atomic
from sperm_d2.data.labelme_io import write_labelme_json
from sperm_d2.data.synthetic import render_scene_detailed

logger = logging.getLogger(__name__)


def write_synthetic_scene(out_dir: Path, stem: str, seed: int, height: int, width: int) -> int:
    """Render scene ``seed`` to ``out_dir/stem.png`` + ``stem.json``; returns its head count."""
    img, heads = render_scene_detailed(np.random.default_rng(seed), height, width)
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"{out_dir / stem}.png: PNG encoding failed")
    write_bytes_atomic(out_dir / f"{stem}.png", png.tobytes())
    shapes = [
        {"label": kind, "points": np.round(poly, 2).tolist(), "shape_type": "polygon"}
        for kind, _, poly in heads
    ]
    write_labelme_json(out_dir / f"{stem}.json", out_dir / f"{stem}.png", height, width, shapes)
    return len(heads)


def make_synthetic_dataset(
    out_dir: str | os.PathLike, num_images: int = 160, size: int = 192, seed: int = 0
) -> Path:
    """Write ``num_images`` scenes of ``size`` x ``size`` px as labelme files under ``out_dir``.

    Scene ``i`` is rendered from seed ``seed * 1_000_003 + i``: the same call gives the same files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    heads = 0
    for i in tqdm(range(num_images), desc="synthetic", unit="img", disable=num_images < 200):
        heads += write_synthetic_scene(out_dir, f"syn_{i:05d}", seed * 1_000_003 + i, size, size)
    logger.info("wrote %d synthetic images (%d heads) to %s", num_images, heads, out_dir)
    return out_dir
