"""Image/coordinate operations shared by online (detectron2) and offline augmentation.

Pure numpy + OpenCV. Coordinates are continuous: an ``h`` x ``w`` image spans ``[0, w] x [0, h]``
and pixel ``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

import cv2
import numpy as np


def rot90_coords(coords: np.ndarray, h: int, w: int, k: int) -> np.ndarray:
    """Map (x, y) points through ``np.rot90(image, k)`` of an ``h`` x ``w`` image."""
    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    for _ in range(k % 4):  # one counter-clockwise quarter turn: (x, y) on (h, w) -> (y, w - x)
        x, y = y, w - x
        h, w = w, h
    return np.stack([x, y], axis=1).astype(coords.dtype, copy=False)


def affine_coords(coords: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map points through a 2x3 ``cv2.warpAffine`` matrix (which works on pixel centres)."""
    pts = coords.astype(np.float64) - 0.5
    return pts @ matrix[:, :2].T + matrix[:, 2] + 0.5


def shift_hue(image: np.ndarray, degrees: float, fmt: str = "BGR") -> np.ndarray:
    """Rotate the hue of a BGR/RGB image (uint8 or float 0-255) by ``degrees`` (stain colour)."""
    dtype = image.dtype
    img = np.clip(image, 0, 255).astype(np.uint8)
    to_hsv, from_hsv = (
        (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR)
        if fmt == "BGR"
        else (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB)
    )
    hsv = cv2.cvtColor(img, to_hsv)
    hue = hsv[..., 0].astype(np.int32) + int(round(degrees / 2.0))  # OpenCV hue is 0-179
    hsv[..., 0] = (hue % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, from_hsv).astype(dtype)
