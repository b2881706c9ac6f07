"""Skeleton length of a thin mask (a tail): Zhang-Suen thinning in numpy, then the length of the
8-connected centre line. numpy only (the project's OpenCV has no ``ximgproc``)."""

from __future__ import annotations

import math

import numpy as np


def _neighbours(img: np.ndarray) -> list[np.ndarray]:
    """P2..P9 of every pixel (clockwise from north) of a 0/1 array padded by one pixel."""
    p = np.pad(img, 1)
    h, w = img.shape
    at = lambda dy, dx: p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]  # noqa: E731
    return [at(-1, 0), at(-1, 1), at(0, 1), at(1, 1), at(1, 0), at(1, -1), at(0, -1), at(-1, -1)]


def thin(mask: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """Zhang-Suen thinning of a binary mask to a one-pixel-wide skeleton (bool)."""
    img = np.asarray(mask, bool).astype(np.uint8)
    for _ in range(max_iter):
        changed = False
        for step in (0, 1):
            n = _neighbours(img)
            b = sum(n)
            seq = n + [n[0]]
            a = sum(((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.uint8) for i in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if step == 0:
                c1, c2 = p2 * p4 * p6, p4 * p6 * p8
            else:
                c1, c2 = p2 * p4 * p8, p2 * p6 * p8
            remove = (img == 1) & (b >= 2) & (b <= 6) & (a == 1) & (c1 == 0) & (c2 == 0)
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            break
    return img.astype(bool)


def path_length(skeleton: np.ndarray) -> float:
    """Length in pixels of a one-pixel-wide 8-connected line: orthogonal steps count 1, diagonal
    steps √2 (a diagonal step beside an orthogonal corner is not counted twice)."""
    s = np.asarray(skeleton, bool)
    orth = int((s[:, 1:] & s[:, :-1]).sum() + (s[1:] & s[:-1]).sum())
    # down-right and down-left pairs with neither corner pixel set
    dr = s[1:, 1:] & s[:-1, :-1] & ~s[:-1, 1:] & ~s[1:, :-1]
    dl = s[1:, :-1] & s[:-1, 1:] & ~s[:-1, :-1] & ~s[1:, 1:]
    return orth + math.sqrt(2) * int(dr.sum() + dl.sum())


def skeleton_length(mask: np.ndarray) -> float:
    """Centre-line length in pixels of a thin mask (0 for an empty one); the mask is cropped to
    its bounding box first so thinning costs what the object does."""
    mask = np.asarray(mask, bool)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0.0
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return path_length(thin(crop))
