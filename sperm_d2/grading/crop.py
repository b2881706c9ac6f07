"""The canonical head crop: one function, used to cut training samples and at inference alike.

From an image and one head's mask, :func:`canonical_crop` cuts a ``size`` x ``size`` crop
centred on the head, rotated so that its long axis is horizontal, and scaled so that the long
axis spans ``head_fraction`` of the side (or, with ``fixed_scale``, at one scale for every head,
so that its size shows). The direction along each axis is fixed by the sign of
the mask's third moment (its skew), so a head and its mirror image give the same crop up to the
flips that training augments with. With ``align=False`` (the "unaligned" view, a second view
for an ensemble) the crop is not rotated: the head as it lies in the image, centred on its
bounding box, its longer box side spanning ``head_fraction``. Pure numpy + OpenCV.

Defined results for the awkward cases (never an exception):

* a head touching the image border: the missing pixels repeat the border (``BORDER_REPLICATE``)
  and the mask channel is 0 there; ``touches_border`` is set;
* a tiny head: upscaled at most ``max_scale`` times (it stays small rather than a blur);
* a degenerate mask (fewer than 3 pixels): the crop is centred on its pixels (or on the image
  centre for an empty mask), not rotated, at the scale that shows the whole image side
  (``degenerate`` is set).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from sperm_d2.errors import InputError
from sperm_d2.head_frame import head_frame


@dataclasses.dataclass(frozen=True)
class CanonicalCrop:
    """One head's crop: ``image`` (S, S, 3) uint8 in the input's channel order, ``mask`` (S, S)
    uint8 0/255, and the 2x3 ``matrix`` mapping image pixels to crop pixels (``cv2.warpAffine``)."""

    image: np.ndarray
    mask: np.ndarray
    matrix: np.ndarray
    angle_degrees: float
    scale: float
    degenerate: bool
    touches_border: bool


def canonical_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int = 64,
    head_fraction: float = 0.6,
    max_scale: float = 8.0,
    fixed_scale: float = 0.0,
    align: bool = True,
) -> CanonicalCrop:
    """Cut the canonical crop of the head ``mask`` (H, W bool/uint8) from ``image`` (H, W, 3)
    (``align=False``: the unaligned view, see the module docstring)."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image is {image.shape[:2]}, mask is {mask.shape[:2]}")
    matrix, angle, scale, degenerate = head_frame(
        mask, size, head_fraction, max_scale, fixed_scale, align
    )
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    mask_u8 = (np.asarray(mask) > 0).astype(np.uint8) * 255
    crop_mask = cv2.warpAffine(
        mask_u8, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    edges = (mask_u8[0], mask_u8[-1], mask_u8[:, 0], mask_u8[:, -1]) if mask_u8.size else ()
    touches = any(bool(e.any()) for e in edges)
    return CanonicalCrop(crop, crop_mask, matrix, angle, scale, degenerate, touches)


def model_input(crop: CanonicalCrop, mask_mode: str) -> np.ndarray:
    """The grader's (S, S, C) uint8 input for ``mask_mode``: "channel" appends the mask as a 4th
    channel, "suppress" greys out the background, "none" keeps the colour crop only."""
    if mask_mode == "channel":
        return np.dstack([crop.image, crop.mask])
    if mask_mode == "suppress":
        m = (crop.mask.astype(np.float32) / 255.0)[..., None]
        grey = np.float32(128.0)
        return (crop.image.astype(np.float32) * m + grey * (1 - m)).round().astype(np.uint8)
    if mask_mode == "none":
        return crop.image
    raise InputError(f"SPERM.GRADER.MASK_MODE {mask_mode!r}: use channel, suppress or none")


def input_channels(mask_mode: str) -> int:
    """Number of channels :func:`model_input` gives for ``mask_mode``."""
    return 4 if mask_mode == "channel" else 3
