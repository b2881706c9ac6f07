"""The canonical frame of a head mask: the 2x3 affine matrix that centres a head, turns its long
axis horizontal and scales it (pure numpy). :mod:`sperm_d2.grading.crop` cuts the grader's
crops through it and :mod:`sperm_d2.parts.head_crop` the head-part segmenter's, so both models
see a head in the same frame; the frame's conventions are described in ``grading/crop.py``.
"""

from __future__ import annotations

import math

import numpy as np

#: fewer mask pixels than this and the orientation is undefined
MIN_PIXELS = 3


def head_frame(
    mask: np.ndarray,
    size: int,
    head_fraction: float = 0.6,
    max_scale: float = 8.0,
    fixed_scale: float = 0.0,
    align: bool = True,
) -> tuple[np.ndarray, float, float, bool]:
    """``(matrix, angle in degrees, scale, degenerate)`` of the canonical frame of ``mask``;
    ``fixed_scale`` > 0 keeps that scale for every head (its size is then seen, not normalised);
    ``align=False``: the image's own axes (angle 0), no rotation or reflection."""
    h, w = mask.shape[:2]
    ys, xs = np.nonzero(mask)
    if len(xs) < MIN_PIXELS:
        cx, cy = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5) if len(xs) else (w / 2, h / 2)
        scale = min(size / max(h, w, 1), max_scale)
        return _matrix(cx, cy, 1.0, 0.0, scale, size), 0.0, scale, True
    px, py = xs.astype(np.float64) + 0.5, ys.astype(np.float64) + 0.5
    if not align:
        return _upright_frame(px, py, size, head_fraction, max_scale, fixed_scale)
    cx, cy = px.mean(), py.mean()
    dx, dy = px - cx, py - cy
    # orientation of the major axis from the second central moments
    theta = 0.5 * math.atan2(2.0 * (dx * dy).mean(), (dx * dx).mean() - (dy * dy).mean())
    c, s = math.cos(theta), math.sin(theta)
    u, v = dx * c + dy * s, -dx * s + dy * c  # coordinates along / across the major axis
    # fix each axis's direction by the skew, so that mirror images meet in one frame
    su = 1.0 if (u**3).mean() >= 0 else -1.0
    sv = 1.0 if (v**3).mean() >= 0 else -1.0
    u_lo, u_hi, v_lo, v_hi = u.min() - 0.5, u.max() + 0.5, v.min() - 0.5, v.max() + 0.5
    # centre on the middle of the extent (not the centroid): asymmetric heads stay centred
    mu, mv = (u_lo + u_hi) / 2, (v_lo + v_hi) / 2
    ccx, ccy = cx + mu * c - mv * s, cy + mu * s + mv * c
    extent = max(u_hi - u_lo, v_hi - v_lo, 1.0)
    scale = fixed_scale if fixed_scale > 0 else min(size * head_fraction / extent, max_scale)
    matrix = _rotation_matrix(ccx, ccy, c * su, s * su, -s * sv, c * sv, scale, size)
    return matrix, math.degrees(math.atan2(s * su, c * su)), scale, False


def _upright_frame(px, py, size, head_fraction, max_scale, fixed_scale):
    """The unaligned frame of pixel centres ``px, py``: centred on their bounding box."""
    x_lo, x_hi, y_lo, y_hi = px.min() - 0.5, px.max() + 0.5, py.min() - 0.5, py.max() + 0.5
    extent = max(x_hi - x_lo, y_hi - y_lo, 1.0)
    scale = fixed_scale if fixed_scale > 0 else min(size * head_fraction / extent, max_scale)
    matrix = _matrix((x_lo + x_hi) / 2, (y_lo + y_hi) / 2, 1.0, 0.0, scale, size)
    return matrix, 0.0, scale, False


def _matrix(cx: float, cy: float, c: float, s: float, scale: float, size: int) -> np.ndarray:
    return _rotation_matrix(cx, cy, c, s, -s, c, scale, size)


def _rotation_matrix(cx, cy, ax, ay, bx, by, scale, size) -> np.ndarray:
    """Pixel-centre-aware 2x3 matrix: crop x along (ax, ay), crop y along (bx, by), centred."""
    half = size / 2.0
    rows = np.array([[ax, ay], [bx, by]], np.float64) * scale
    # continuous coordinates: crop = rows @ (img - centre) + half; cv2 works on pixel centres
    # (continuous = index + 0.5), hence the 0.5 terms
    offset = half - rows @ np.array([cx, cy]) + rows @ np.array([0.5, 0.5]) - 0.5
    return np.hstack([rows, offset[:, None]]).astype(np.float64)
