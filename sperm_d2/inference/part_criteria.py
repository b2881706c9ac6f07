"""WHO strict criteria per sperm from its parts: measurements, flags and a criteria grade.

Pure numpy + OpenCV. Reference: WHO laboratory manual for the examination and processing of
human semen, 6th ed. (2021), §3.6 "Sperm morphology", the criteria for a normal spermatozoon
(the head ranges as in the 5th ed. 2010 §2.15.2, see :mod:`sperm_d2.inference.morphometrics`):

* head: smooth, regularly contoured, generally oval; length 3.7-4.7 µm, width 2.5-3.2 µm,
  length/width 1.3-1.8 (the µm ranges are checked only with a pixel size; without one the
  head's size is noted as not assessed and the grade rests on the other criteria);
* acrosome: 40-70 % of the head area;
* vacuoles: no large vacuoles and no more than 2 small ones, together no more than 20 % of the
  head area;
* midpiece: slender, regular, about the same length as the head, its major axis aligned with
  the head's; residual cytoplasm only when under one third of the head;
* tail (principal piece): uniform, thinner than the midpiece, about 45 µm (~10 head lengths),
  not sharply bent or coiled.

The manual's words become numbers here (the project's choices, scale-free so they hold in
pixels too): the midpiece is "about the head's length" when 0.7-1.5 head lengths
(:data:`MIDPIECE_LENGTH_RATIO`), "slender" when at most half the head's width
(:data:`MIDPIECE_MAX_WIDTH_RATIO`), "aligned" within :data:`MIDPIECE_MAX_ANGLE_DEG`; a tail is
long enough from :data:`TAIL_MIN_LENGTH_RATIO` head lengths (a tail cut by the image border is
not measured). Residual cytoplasm, tail coiling and the head's contour are not judged (the parts
annotation has no class for them). A sperm is "normal" only when every assessable criterion
holds, "not assessable" when its head is cut by the border or a part it needs (acrosome,
nucleus, midpiece, tail) is missing, and "abnormal" otherwise, with the failed criteria listed.
A head size unjudged for want of a pixel size and a tail cut by the border are listed as not
assessed without making the sperm "not assessable" (:data:`NOT_BLOCKING`).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from sperm_d2.inference.morphometrics import WHO_ELLIPTICITY, WHO_LENGTH_UM, WHO_WIDTH_UM
from sperm_d2.inference.morphometrics import _equivalent_ellipse as equivalent_ellipse
from sperm_d2.inference.skeleton import skeleton_length
from sperm_d2.masks import cut_by_border, mask_box
from sperm_d2.parts.targets import PART_CLASSES

#: acrosome share of the head area, in % (WHO 2021)
WHO_ACROSOME_SHARE = (40.0, 70.0)
#: at most this many (small) vacuoles, together at most this % of the head (WHO 2021)
WHO_MAX_VACUOLES = 2
WHO_MAX_VACUOLE_SHARE = 20.0
#: midpiece length / head length ("about the same length as the head")
MIDPIECE_LENGTH_RATIO = (0.7, 1.5)
#: midpiece width / head width at most ("slender")
MIDPIECE_MAX_WIDTH_RATIO = 0.5
#: angle between the midpiece's and the head's long axes at most ("aligned"), degrees
MIDPIECE_MAX_ANGLE_DEG = 30.0
#: tail length / head length at least (WHO: ~45 µm, ~10 head lengths; half of that)
TAIL_MIN_LENGTH_RATIO = 5.0
#: the parts a sperm needs to be assessable
NEEDED_PARTS = ("acrosome", "nucleus", "midpiece", "tail")
#: the not-assessed entry of a head judged without a pixel size: its µm length and width unchecked
NO_SCALE = "head_size_no_scale"
#: not-assessed entries that leave the grade to the other criteria: the head's µm size without a
#: pixel size, the length of a tail that leaves the field
NOT_BLOCKING = (NO_SCALE, "tail_cut_by_border")

GRADES = ("normal", "abnormal", "not assessable")
#: criteria by region, for the report's counts of head / midpiece / tail defects
REGION = {
    "head_length": "head",
    "head_width": "head",
    "head_ellipticity": "head",
    "acrosome_share": "head",
    "vacuole_count": "head",
    "vacuole_share": "head",
    "midpiece_length": "midpiece",
    "midpiece_width": "midpiece",
    "midpiece_angle": "midpiece",
    "tail_length": "tail",
}


@dataclasses.dataclass
class PartCriteria:
    """One sperm's part measurements (pixels; ``*_um`` with a pixel size, else ``None``), the
    criteria that failed or could not be assessed, and the grade (one of :data:`GRADES`)."""

    head_area_px: float = 0.0
    head_length_px: float = 0.0
    head_width_px: float = 0.0
    head_ellipticity: float = 0.0
    acrosome_share: float | None = None  # % of the head area
    vacuole_count: int = 0
    vacuole_share: float = 0.0  # % of the head area
    midpiece_length_px: float | None = None
    midpiece_width_px: float | None = None
    midpiece_angle_deg: float | None = None
    tail_length_px: float | None = None
    head_length_um: float | None = None
    head_width_um: float | None = None
    head_area_um2: float | None = None
    midpiece_length_um: float | None = None
    midpiece_width_um: float | None = None
    tail_length_um: float | None = None
    failed: list[str] = dataclasses.field(default_factory=list)
    not_assessed: list[str] = dataclasses.field(default_factory=list)
    grade: str = "not assessable"

    def as_row(self) -> dict:
        """Flat dict for CSV/JSON, prefixed ``who_``: floats rounded, lists joined with ";"."""
        row = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                v = ";".join(v)
            elif isinstance(v, float):
                v = round(v, 3)
            row[f"who_{f.name}"] = v
        return row

    def regions_failed(self) -> set[str]:
        """The regions (head, midpiece, tail) with a failed criterion."""
        return {REGION[c.split(":")[0]] for c in self.failed}


def _axis_angle(a: float, b: float) -> float:
    """Angle in [0, 90] degrees between two undirected axes given in degrees."""
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def _rod_length(mask: np.ndarray) -> float:
    """Long side of the minimum-area rectangle around a mask's pixels (a rod's length; the
    equivalent ellipse would say 2/sqrt(3) = 1.15 times a rectangle's length)."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1).astype(np.float32)
    (_, _), (w, h), _ = cv2.minAreaRect(pts)
    return float(max(w, h)) + 1.0  # pixel centres: a run of n pixels spans n - 1 + 1


def _components(mask: np.ndarray) -> int:
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return n - 1


def assess_sperm(
    parts: dict[str, np.ndarray], head: np.ndarray | None = None, um_per_px: float = 0.0
) -> PartCriteria:
    """Measure one sperm and grade it by the criteria above.

    ``parts`` maps part names (acrosome, nucleus, vacuole, midpiece, tail) to (H, W) bool masks
    of the whole image (a part may be absent or empty); ``head`` is the head's mask (default:
    acrosome + nucleus + vacuole). ``um_per_px > 0`` adds µm values and the µm head checks;
    without it ``head_size_no_scale`` is listed as not assessed (the grade does not wait on it).
    """
    shape = next(iter(parts.values())).shape if parts else np.shape(head)
    masks = {n: np.asarray(parts.get(n, np.zeros(shape, bool)), bool) for n in PART_CLASSES}
    if head is None:
        head = masks["acrosome"] | masks["nucleus"] | masks["vacuole"]
    head = np.asarray(head, bool)
    # the border is the image's: judged before the masks are cut to the sperm's box
    head_cut, tail_cut = (bool(cut_by_border(m[None])[0]) for m in (head, masks["tail"]))
    # the measurements below do not depend on where the sperm lies (moments, rectangles,
    # components, skeletons): they run on the box around it, costing what it does, not the field
    box = mask_box([head, *masks.values()], margin=1) or (slice(0, 0),) * 2
    head, masks = head[box], {n: m[box] for n, m in masks.items()}
    acro, nucl, vac, mid, tail = (masks[n] for n in PART_CLASSES)
    out = PartCriteria()
    failed, skipped = out.failed, out.not_assessed
    missing = [n for n in NEEDED_PARTS if not masks[n].any()]
    skipped += [f"missing:{n}" for n in missing]
    area = float(head.sum())
    if area == 0:
        out.not_assessed = ["missing:head"] + skipped
        return out
    if head_cut:
        skipped.append("head_cut_by_border")
    length, width, head_angle = equivalent_ellipse(head)
    out.head_area_px, out.head_length_px, out.head_width_px = area, length, width
    out.head_ellipticity = length / width if width > 0 else 0.0
    lo, hi = WHO_ELLIPTICITY
    if not lo <= out.head_ellipticity <= hi:
        failed.append(f"head_ellipticity:{out.head_ellipticity:.2f}")
    if um_per_px > 0:
        out.head_length_um, out.head_width_um = length * um_per_px, width * um_per_px
        out.head_area_um2 = area * um_per_px**2
        for name, v, (lo, hi) in (
            ("head_length", out.head_length_um, WHO_LENGTH_UM),
            ("head_width", out.head_width_um, WHO_WIDTH_UM),
        ):
            if not lo <= v <= hi:
                failed.append(f"{name}:{v:.2f}um")
    else:
        skipped.append(NO_SCALE)  # said, so a "normal" is not read as size-checked
    if acro.any():
        out.acrosome_share = 100.0 * float((acro & head).sum()) / area
        lo, hi = WHO_ACROSOME_SHARE
        if not lo <= out.acrosome_share <= hi:
            failed.append(f"acrosome_share:{out.acrosome_share:.0f}%")
    out.vacuole_count = _components(vac & head)
    out.vacuole_share = 100.0 * float((vac & head).sum()) / area
    if out.vacuole_count > WHO_MAX_VACUOLES:
        failed.append(f"vacuole_count:{out.vacuole_count}")
    if out.vacuole_share > WHO_MAX_VACUOLE_SHARE:
        failed.append(f"vacuole_share:{out.vacuole_share:.0f}%")
    if mid.any():
        _, _, m_angle = equivalent_ellipse(mid)
        m_len = _rod_length(mid)
        out.midpiece_length_px = m_len
        out.midpiece_width_px = float(mid.sum()) / m_len if m_len > 0 else 0.0
        out.midpiece_angle_deg = _axis_angle(m_angle, head_angle)
        ratio = m_len / length
        if not MIDPIECE_LENGTH_RATIO[0] <= ratio <= MIDPIECE_LENGTH_RATIO[1]:
            failed.append(f"midpiece_length:{ratio:.2f}x_head")
        if out.midpiece_width_px > MIDPIECE_MAX_WIDTH_RATIO * width:
            failed.append(f"midpiece_width:{out.midpiece_width_px / width:.2f}x_head")
        if out.midpiece_angle_deg > MIDPIECE_MAX_ANGLE_DEG:
            failed.append(f"midpiece_angle:{out.midpiece_angle_deg:.0f}deg")
    if tail.any():
        out.tail_length_px = skeleton_length(tail)
        if tail_cut:
            skipped.append("tail_cut_by_border")  # its length is a lower bound only
        elif out.tail_length_px < TAIL_MIN_LENGTH_RATIO * length:
            failed.append(f"tail_length:{out.tail_length_px / length:.1f}x_head")
    if um_per_px > 0:
        for name in ("midpiece_length", "midpiece_width", "tail_length"):
            v = getattr(out, f"{name}_px")
            setattr(out, f"{name}_um", None if v is None else v * um_per_px)
    blocking = [s for s in skipped if s not in NOT_BLOCKING]
    out.grade = "not assessable" if blocking else ("abnormal" if failed else "normal")
    return out


def teratozoospermia_index(criteria: list[PartCriteria]) -> float | None:
    """Mean number of defective regions (head, midpiece, tail; 1-3) per abnormal sperm among the
    assessable ones (WHO 2021 §3.6 multiple anomalies indices); ``None`` without abnormal ones."""
    abnormal = [c for c in criteria if c.grade == "abnormal"]
    if not abnormal:
        return None
    return sum(len(c.regions_failed()) for c in abnormal) / len(abnormal)
