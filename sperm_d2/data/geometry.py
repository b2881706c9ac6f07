"""Shape geometry for conversion: labelme shapes -> polygons -> clipped polygons -> RLE stats.

bbox and area come from the rasterised mask (pycocotools), exactly as COCO evaluation sees it.
"""

from __future__ import annotations

import math

import numpy as np
from pycocotools import mask as mask_utils

POLYGON_TYPES = ("polygon", "rectangle", "circle")  # converted; anything else is ignored
CIRCLE_VERTICES = 32


def shape_to_polygon(shape_type: str, points: list[list[float]]) -> np.ndarray | None:
    """An (N, 2) polygon for polygon/rectangle/circle shapes, ``None`` for other shape types.

    A rectangle is given by two opposite corners, a circle by its centre and a point on it.
    Degenerate input (too few points) comes back as a short array for the caller to reject.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if shape_type == "polygon":
        return pts
    if shape_type == "rectangle":
        if len(pts) < 2:
            return pts
        (x0, y0), (x1, y1) = pts[0], pts[1]
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    if shape_type == "circle":
        if len(pts) < 2:
            return pts
        (cx, cy), (px, py) = pts[0], pts[1]
        r = math.hypot(px - cx, py - cy)
        t = np.linspace(0, 2 * np.pi, CIRCLE_VERTICES, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    return None


def clip_polygon(poly: np.ndarray, width: int, height: int) -> tuple[np.ndarray, bool]:
    """Clamp vertices into ``[0, width] x [0, height]``; returns (polygon, whether any moved)."""
    clipped = np.empty_like(poly)
    clipped[:, 0] = np.clip(poly[:, 0], 0, width)
    clipped[:, 1] = np.clip(poly[:, 1], 0, height)
    moved = bool(np.any(clipped != poly)) if len(poly) else False
    return clipped, moved


def polygons_rle(polygons: list[np.ndarray], height: int, width: int) -> dict:
    """Union of polygons as one COCO RLE."""
    flat = [p.ravel().tolist() for p in polygons]
    rles = mask_utils.frPyObjects(flat, height, width)
    return mask_utils.merge(rles)


def mask_stats(polygons: list[np.ndarray], height: int, width: int) -> tuple[float, list[float]]:
    """(area in pixels, [x, y, w, h]) of the rasterised union of ``polygons``."""
    rle = polygons_rle(polygons, height, width)
    return float(mask_utils.area(rle)), [float(v) for v in mask_utils.toBbox(rle)]
