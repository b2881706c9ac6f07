"""The head-part segmenter's input: a head's canonical crop with its mask, and the way back.

``SPERM.PARTS.INPUT "head"``: the segmenter sees each head alone, in the grader's canonical
frame (:func:`sperm_d2.head_frame.head_frame`: centred, its long axis horizontal, scaled so
that it spans ``head_fraction`` of the crop), with the head's mask as a 4th channel, and splits
it into acrosome, nucleus and vacuole. A head is handled as a *patch*: its mask cut to its
bounding box grown by :data:`PATCH_MARGIN` px, and the patch's offset in the image, so that no
step touches more of a 1280 x 1024 field than the head. Training (``parts.head_loader``) and
inference (``parts.parser``) cut crops with the same function; :func:`to_patch` maps the
segmenter's probabilities back onto the patch. Pure numpy + OpenCV.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from sperm_d2.head_frame import head_frame
from sperm_d2.masks import mask_box

#: px around a head's bounding box kept in its patch (covers the training mask jitter)
PATCH_MARGIN = 8


@dataclasses.dataclass(frozen=True)
class HeadPatch:
    """One head: ``mask`` (h, w) bool over the patch, whose top-left pixel is ``(x0, y0)`` of
    the image; ``labels`` (h, w) uint8 its part labels where known (training), else ``None``."""

    x0: int
    y0: int
    mask: np.ndarray
    labels: np.ndarray | None = None


def head_patch(mask: np.ndarray, labels: np.ndarray | None = None) -> HeadPatch | None:
    """The patch of a full-image head ``mask`` (and of its ``labels``); ``None`` for an empty
    mask."""
    cut = mask_box(np.asarray(mask, bool), PATCH_MARGIN)
    if cut is None:
        return None
    return HeadPatch(
        cut[1].start,
        cut[0].start,
        np.asarray(mask[cut], bool).copy(),
        None if labels is None else labels[cut].copy(),
    )


def jitter_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` grown (``px`` > 0) or shrunk (``px`` < 0) by ``|px|`` px; an empty result keeps
    the mask as it was."""
    if px == 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(px) + 1, 2 * abs(px) + 1))
    op = cv2.dilate if px > 0 else cv2.erode
    out = op(mask.astype(np.uint8), k).astype(bool)
    return out if out.any() else mask


def crop_matrix(
    patch_mask: np.ndarray, size: int, head_fraction: float, rotate_degrees: float = 0.0
) -> np.ndarray:
    """2x3 matrix from patch pixels to crop pixels: the canonical frame of ``patch_mask``,
    turned by ``rotate_degrees`` more about the crop's centre (training augmentation)."""
    matrix = head_frame(patch_mask, size, head_fraction)[0]
    if rotate_degrees:
        c = (size - 1) / 2.0
        turn = np.vstack([cv2.getRotationMatrix2D((c, c), rotate_degrees, 1.0), [0, 0, 1]])
        matrix = (turn @ np.vstack([matrix, [0, 0, 1]]))[:2]
    return matrix


def cut_head(
    image: np.ndarray, patch: HeadPatch, matrix: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(input, labels)``: the (S, S, 4) uint8 crop (colour + mask 0/255) of ``patch`` in
    ``image`` through the patch-to-crop ``matrix``, and its (S, S) uint8 labels (``None``
    without patch labels)."""
    to_image = matrix.copy()
    to_image[:, 2] -= matrix[:, :2] @ np.array([patch.x0, patch.y0], np.float64)
    colour = cv2.warpAffine(
        image, to_image, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    mask = cv2.warpAffine(
        patch.mask.astype(np.uint8) * 255, matrix, (size, size), flags=cv2.INTER_LINEAR
    )
    labels = None
    if patch.labels is not None:
        labels = cv2.warpAffine(patch.labels, matrix, (size, size), flags=cv2.INTER_NEAREST)
    return np.dstack([colour, mask]), labels


def to_patch(probs: np.ndarray, matrix: np.ndarray, patch: HeadPatch) -> np.ndarray:
    """(K, h, w) float32: crop probabilities ``probs`` (K, S, S) carried back onto the patch
    (outside the crop: background, class 0, probability 1)."""
    h, w = patch.mask.shape
    out = np.empty((len(probs), h, w), np.float32)
    for k, p in enumerate(probs):
        out[k] = cv2.warpAffine(
            np.ascontiguousarray(p, np.float32),
            matrix,
            (w, h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=1.0 if k == 0 else 0.0,
        )
    return out
