"""labelme / X-AnyLabeling shapes -> head outlines (polygons in image coordinates).

Every shape type those tools write is either an outline or refused with the reason
(:class:`ShapeProblem`), so a head can never be dropped as if it were background:

- ``polygon``: its points (a self-intersecting one counts by its filled, rasterised area);
- ``rectangle``: 2 opposite corners, or the 4 corners labelme >= 5.3 and X-AnyLabeling write;
- ``rotation`` (X-AnyLabeling): its 4 corners (already turned: a ``direction`` key is not
  needed);
- ``circle``: centre and a point on it;
- ``mask`` (labelme >= 5.3): a base64 PNG of the mask inside the box ``points`` (2 corners), as
  labelme pastes it (``mask[y1:y2 + 1, x1:x2 + 1]``); outlined along the pixel edges, so the
  outlines rasterise back to exactly the mask's pixels (holes filled: COCO polygons have none);
- ``point``, ``points``, ``line``, ``linestrip`` and any other type: not an outline.

A shape with fewer points than any outline needs comes back as that short array, for the caller
to report as degenerate (as a polygon of 2 points); a wrong number of corners is a problem.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings

import cv2
import numpy as np
from PIL import Image

from sperm_d2.data.geometry import shape_to_polygon
from sperm_d2.data.labelme_io import LabelmeShape
from sperm_d2.image_io import MAX_IMAGE_PIXELS

OUTLINE_TYPES = ("polygon", "rectangle", "rotation", "circle", "mask")
_MIN_POINTS = {"polygon": 3, "rectangle": 2, "rotation": 3, "circle": 2}  # fewer: degenerate
_NOT_OUTLINES = {
    "point": "a point marks a place, it outlines nothing",
    "points": "points mark places, they outline nothing",
    "line": "a line is not a closed outline",
    "linestrip": "a line strip is not a closed outline",
}


class ShapeProblem(ValueError):
    """A shape that cannot be turned into an outline; the message says why (one line)."""


def shape_outlines(shape: LabelmeShape) -> list[np.ndarray]:
    """The (N, 2) float64 outlines of one shape (several for a mask of several pieces, none for
    an empty mask); a shape with too few points comes back as one short array.

    Raises:
        ShapeProblem: a shape type that is not an outline, a wrong number of corners, or mask
            data that is missing, not a PNG, or does not fit its box.
    """
    stype, pts = shape.shape_type, shape.points
    if stype == "mask":
        return mask_outlines(shape.mask, pts)
    if stype not in _MIN_POINTS:
        why = _NOT_OUTLINES.get(stype, "not a shape type that outlines an area")
        raise ShapeProblem(f"{why} (outline shape types: {', '.join(OUTLINE_TYPES)})")
    if len(pts) < _MIN_POINTS[stype]:
        return [np.asarray(pts, dtype=np.float64).reshape(-1, 2)]
    if stype == "rectangle" and len(pts) == 5 and pts[0] == pts[-1]:
        pts = pts[:4]  # a closed ring: the first corner repeated
    if stype == "rectangle" and len(pts) not in (2, 4):
        raise ShapeProblem(f"a rectangle has 2 or 4 corners, this one {len(pts)} points")
    if stype == "rotation" and len(pts) != 4:
        raise ShapeProblem(f"a rotated box has 4 corners, this one {len(pts)} points")
    return [shape_to_polygon(stype, pts)]


def mask_outlines(data: str | None, points: list[list[float]]) -> list[np.ndarray]:
    """Outlines, in image coordinates, of a labelme ``mask`` shape: ``data`` the base64 PNG of
    the mask, ``points`` the 2 corners of its box (pasted at the top-left one, as labelme does).

    Raises:
        ShapeProblem: no mask data, not 2 corners, not a PNG, or a size that does not fit the box.
    """
    if not isinstance(data, str) or not data:
        raise ShapeProblem("a mask shape without its 'mask' data (a base64 PNG)")
    if len(points) != 2:
        raise ShapeProblem(f"a mask's box has 2 corners, this one {len(points)} points")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if not all(abs(v) < 2**31 for v in xs + ys):
        raise ShapeProblem("its mask box is out of range")
    x0, y0 = math.floor(min(xs)), math.floor(min(ys))
    box_w, box_h = math.floor(max(xs)) - x0 + 1, math.floor(max(ys)) - y0 + 1
    mask = _decode_mask(data, box_w, box_h)
    h, w = mask.shape
    # Outline along pixel edges: on a grid of half pixels, each set pixel covers its closed
    # square (3 x 3 points); the outer contour of that, halved, runs exactly on the edges.
    grid = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
    grid[1::2, 1::2] = mask
    grid = cv2.dilate(grid, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(grid, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2) / 2.0 + (x0, y0) for c in contours]


def _decode_mask(data: str, box_w: int, box_h: int) -> np.ndarray:
    """The mask PNG as a (h, w) uint8 0/1 array; its size must be its box's (1 px tolerance)."""
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ShapeProblem("its 'mask' is not valid base64") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as im:
                w, h = im.size
                if abs(w - box_w) > 1 or abs(h - box_h) > 1 or w * h > MAX_IMAGE_PIXELS:
                    raise ShapeProblem(
                        f"its mask is {w}x{h} pixels, its box {box_w}x{box_h}: where does it go?"
                    )
                if im.mode == "P":
                    im = im.convert("RGBA")
                arr = np.asarray(im)
    except ShapeProblem:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for corrupt data
        raise ShapeProblem(
            f"its 'mask' is not an image PIL can read ({type(e).__name__})"
        ) from None
    if arr.ndim == 3:  # colour: any colour channel set (and, with alpha, not transparent)
        colour = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]
        on = colour.any(axis=2)
        if arr.shape[2] in (2, 4):
            on &= arr[..., -1] != 0
        return on.astype(np.uint8)
    return (arr != 0).astype(np.uint8)
