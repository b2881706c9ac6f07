"""Head morphometrics from an instance mask: area, perimeter, length, width, ellipticity.

Length and width are the full major/minor axes of the mask's equivalent ellipse (the ellipse
with the same second moments, as in image-analysis packages such as CASA systems and
scikit-image's ``regionprops``): unlike a fit to boundary pixels it is unbiased for filled
masks and stable for small ones. Perimeter is the length of the outer contour.
"""

import dataclasses
import math

import cv2
import numpy as np

from sperm_d2.masks import mask_box

# Reference ranges for a *normal* head, WHO laboratory manual for the examination and processing
# of human semen, 5th ed. (2010) §2.15.2, kept unchanged in the 6th ed. (2021): Papanicolaou-
# stained normal heads have median length 4.1 µm (95% CI 3.7-4.7), width 2.8 µm (2.5-3.2) and
# length/width ratio 1.5 (1.3-1.8). Values outside are flagged, not graded: the model grades.
WHO_LENGTH_UM = (3.7, 4.7)
WHO_WIDTH_UM = (2.5, 3.2)
WHO_ELLIPTICITY = (1.3, 1.8)

FIELDS = (
    "area_px",
    "perimeter_px",
    "length_px",
    "width_px",
    "ellipticity",
    "angle_deg",
    "area_um2",
    "perimeter_um",
    "length_um",
    "width_um",
    "who_flags",
)


@dataclasses.dataclass
class HeadMorphometrics:
    """Measurements of one head; the ``*_um*`` fields are ``None`` without a pixel size.

    ``who_flags`` lists the measurements outside the WHO normal-head ranges (e.g.
    ``"length>4.7um"``); the ratio is checked always, length and width only in µm.
    """

    area_px: float
    perimeter_px: float
    length_px: float
    width_px: float
    ellipticity: float
    angle_deg: float
    area_um2: float | None = None
    perimeter_um: float | None = None
    length_um: float | None = None
    width_um: float | None = None
    who_flags: list[str] = dataclasses.field(default_factory=list)

    def as_row(self) -> dict:
        """Flat dict for CSV/JSON: floats rounded, flags joined with ";"."""
        row = {}
        for k in FIELDS:
            v = getattr(self, k)
            row[k] = ";".join(v) if k == "who_flags" else (None if v is None else round(v, 3))
        return row


def _equivalent_ellipse(mask: np.ndarray) -> tuple[float, float, float]:
    """(major, minor, angle in degrees) full axes of the ellipse with the mask's moments."""
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    if m["m00"] == 0:
        return 0.0, 0.0, 0.0
    mu20, mu02, mu11 = m["mu20"] / m["m00"], m["mu02"] / m["m00"], m["mu11"] / m["m00"]
    common = math.sqrt(((mu20 - mu02) / 2) ** 2 + mu11**2)
    lam1 = (mu20 + mu02) / 2 + common
    lam2 = max((mu20 + mu02) / 2 - common, 0.0)
    # A uniform ellipse with semi-axis a has variance a^2/4 along it. The +1/12 is the variance of
    # a unit pixel, which makes a one-pixel-wide line one pixel wide instead of zero.
    major = 4 * math.sqrt(lam1 + 1 / 12)
    minor = 4 * math.sqrt(lam2 + 1 / 12)
    angle = 0.5 * math.degrees(math.atan2(2 * mu11, mu20 - mu02))
    return major, minor, angle


def measure_mask(mask: np.ndarray, um_per_px: float = 0.0) -> HeadMorphometrics:
    """Measure one binary mask (any shape ``(H, W)``; only its largest component is used for the
    perimeter). ``um_per_px > 0`` adds µm values and the length/width WHO checks."""
    mask = np.asarray(mask, bool)
    box = mask_box(mask)
    if box is None:
        return HeadMorphometrics(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, who_flags=["empty"])
    crop = mask[box]
    padded = np.pad(crop, 1).astype(np.uint8)  # contours need a background border
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = max(cv2.arcLength(c, True) for c in contours) if contours else 0.0
    major, minor, angle = _equivalent_ellipse(crop)
    ellipticity = major / minor if minor > 0 else 0.0
    out = HeadMorphometrics(
        area_px=float(crop.sum()),
        perimeter_px=float(perimeter),
        length_px=major,
        width_px=minor,
        ellipticity=ellipticity,
        angle_deg=angle,
    )
    flags = _outside("ellipticity", ellipticity, WHO_ELLIPTICITY, "")
    if um_per_px > 0:
        out.area_um2 = out.area_px * um_per_px**2
        out.perimeter_um = out.perimeter_px * um_per_px
        out.length_um = major * um_per_px
        out.width_um = minor * um_per_px
        flags = (
            _outside("length", out.length_um, WHO_LENGTH_UM, "um")
            + _outside("width", out.width_um, WHO_WIDTH_UM, "um")
            + flags
        )
    out.who_flags = flags
    return out


def _outside(name: str, value: float, bounds: tuple[float, float], unit: str) -> list[str]:
    lo, hi = bounds
    if value < lo:
        return [f"{name}<{lo}{unit}"]
    if value > hi:
        return [f"{name}>{hi}{unit}"]
    return []


def measure_masks(masks: np.ndarray, um_per_px: float = 0.0) -> list[HeadMorphometrics]:
    """Measure every mask of an ``(N, H, W)`` stack."""
    return [measure_mask(m, um_per_px) for m in masks]
