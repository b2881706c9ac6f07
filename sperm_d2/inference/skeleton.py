"""Skeleton length of a thin mask (a tail): Zhang-Suen thinning in numpy, then the length of the
8-connected centre line. numpy only (the project's OpenCV has no ``ximgproc``)."""

from __future__ import annotations

import math

import numpy as np

from sperm_d2.masks import mask_box

#: (dy, dx) of P2..P9, clockwise from north
_OFFSETS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def _removal_tables() -> np.ndarray:
    """(2, 256) bool: whether Zhang-Suen's step 0 / 1 removes a set pixel whose neighbours
    P2..P9 are the bits 0..7 of the index: 2 <= B <= 6 set neighbours, A == 1 0->1
    transitions around them, and P2.P4.P6 = P4.P6.P8 = 0 (step 0) or P2.P4.P8 = P2.P6.P8 = 0
    (step 1)."""
    tables = np.zeros((2, 256), bool)
    for code in range(256):
        n = [(code >> k) & 1 for k in range(8)]
        b = sum(n)
        a = sum(n[k] == 0 and n[(k + 1) % 8] == 1 for k in range(8))
        p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
        rule = 2 <= b <= 6 and a == 1
        tables[0, code] = rule and p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
        tables[1, code] = rule and p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return tables


_REMOVE = _removal_tables()


def thin(mask: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """Zhang-Suen thinning of a binary mask to a one-pixel-wide skeleton (bool). Each step
    looks at the set pixels only (a tail is a few % of its box): their 8 neighbours form a
    code that a 256-entry table of the rule answers (scikit-image's ``thin`` uses such tables;
    the project's environment has neither it nor OpenCV's ``ximgproc``)."""
    img = np.pad(np.asarray(mask, bool), 1)
    ys, xs = np.nonzero(img)
    for _ in range(max_iter):
        changed = False
        for step in (0, 1):
            code = np.zeros(ys.shape, np.uint8)
            for bit, (dy, dx) in enumerate(_OFFSETS):
                code |= img[ys + dy, xs + dx].astype(np.uint8) << bit
            remove = _REMOVE[step][code]
            if remove.any():
                img[ys[remove], xs[remove]] = False
                ys, xs = ys[~remove], xs[~remove]
                changed = True
        if not changed:
            break
    return img[1:-1, 1:-1]


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
    box = mask_box(mask)
    return 0.0 if box is None else path_length(thin(mask[box]))
