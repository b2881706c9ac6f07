"""The heads a run report shows: per sample, a bounded set of small head thumbnails collected
while ``run_inference`` streams its inputs (no image is held: each kept head is a PNG of a few
kilobytes, and at most ``per_class`` + ``borderline`` of them per sample).

A head's *certainty* is how sure its grade is: with a head grader the probability of the grade it
got (``max(p_bad, 1 - p_bad)``), without one the detector's score. Per sample the gallery keeps
the most certain heads of each class and the least certain ones overall (the borderline cases a
person would want to check).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from pathlib import Path

import cv2
import numpy as np

from sperm_d2.image_io import encode_image, fit_within
from sperm_d2.inference.types import ImagePrediction

BORDERLINE = "borderline"
#: outline colour (BGR) of each part in the thumbnails: configs/sperm_parts_cpu.yaml's
#: SPERM.CLASS_COLORS (RGB there), so the gallery reads like the part segmenter's own overlays
PART_COLORS_BGR = {
    "acrosome": (40, 200, 230),
    "nucleus": (230, 90, 60),
    "vacuole": (240, 240, 240),
    "midpiece": (200, 60, 230),
    "tail": (80, 200, 40),
}
#: a part the mapping does not name (another part model's classes) is still drawn, in grey
OTHER_PART_BGR = (128, 128, 128)


@dataclasses.dataclass(frozen=True)
class GalleryHead:
    """One kept head: its grade, how sure it is, where it came from and its thumbnail (PNG)."""

    certainty: float
    label: str
    detail: str  # "p_bad 0.03" or "score 0.97"
    where: str  # file name, and frame for videos
    png: bytes


def head_certainty(pred: ImagePrediction, i: int) -> float:
    """How sure head ``i``'s grade is (0.5-1 with a grader, the detector score without one)."""
    if pred.p_bad is not None:
        p = float(pred.p_bad[i])
        return max(p, 1.0 - p)
    return float(pred.scores[i])


def head_thumbnail(
    image: np.ndarray, pred: ImagePrediction, i: int, color: tuple[int, int, int], size: int
) -> np.ndarray:
    """The head's box with a margin, its outline drawn (and its parts' outlines, in
    :data:`PART_COLORS_BGR`, when ``pred`` has parts), scaled so its longer side is ``size``."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = pred.boxes[i]
    m = 0.25 * max(x1 - x0, y1 - y0, 4.0)
    xa, ya = int(max(0, np.floor(x0 - m))), int(max(0, np.floor(y0 - m)))
    xb, yb = int(min(w, np.ceil(x1 + m))), int(min(h, np.ceil(y1 + m)))
    if xb <= xa or yb <= ya:  # a degenerate box: show the whole image
        xa, ya, xb, yb = 0, 0, w, h
    crop = image[ya:yb, xa:xb].copy()
    if pred.part_labels is not None:
        _draw_parts(crop, pred.part_labels[i, ya:yb, xa:xb], pred.part_names)
    contours, _ = cv2.findContours(
        pred.masks[i, ya:yb, xa:xb].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(crop, contours, -1, color, 1, cv2.LINE_AA)
    return fit_within(crop, size)


def part_color(name: str) -> tuple[int, int, int]:
    """The outline colour (BGR) of a part in the thumbnails."""
    return PART_COLORS_BGR.get(name, OTHER_PART_BGR)


def _draw_parts(crop: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> None:
    """Each part's outline on ``crop``, from the head's part labels cut to the same window (the
    crop only: a whole field per part per head would cost the field's size many times over).
    Drawn before the head's outline, which stays on top to show the grade."""
    for k, name in enumerate(names):
        part = labels == k + 1
        if not part.any():
            continue
        contours, _ = cv2.findContours(
            part.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        # not anti-aliased: that spreads a 1-px line over two pixels at half strength, and
        # the colour is what tells the parts apart
        cv2.drawContours(crop, contours, -1, part_color(name), 1, cv2.LINE_8)


class HeadGallery:
    """Collects, per sample, the ``per_class`` most certain heads of each class and the
    ``borderline`` least certain heads; also remembers which sample each input file belongs to
    (one entry per file), so the report can read ``instances.csv`` back by sample."""

    def __init__(
        self,
        colors_bgr: list[tuple[int, int, int]],
        per_class: int = 8,
        borderline: int = 8,
        thumb: int = 72,
    ) -> None:
        self.colors = colors_bgr
        self.per_class, self.borderline, self.thumb = per_class, borderline, thumb
        # (sample, class or BORDERLINE) -> min-heap of (key, tie, GalleryHead)
        self._heaps: dict[tuple[str, str], list] = {}
        self._tie = itertools.count()
        self.sample_of: dict[str, str] = {}
        self.parts_drawn: dict[str, None] = {}  # part names drawn in a thumbnail, in order

    def add(self, sample: str, image: np.ndarray, pred: ImagePrediction) -> None:
        """Offer every head of ``pred`` (decoded ``image``) to ``sample``'s gallery."""
        self.sample_of.setdefault(pred.source, sample)
        for i in range(len(pred)):
            certainty = head_certainty(pred, i)
            label = pred.class_names[int(pred.classes[i])]
            # most certain per class: keep the largest keys; borderline: the smallest
            wanted = [((sample, label), certainty, self.per_class)]
            wanted.append(((sample, BORDERLINE), -certainty, self.borderline))
            head = None
            for key, rank, limit in wanted:
                heap = self._heaps.setdefault(key, [])
                if limit <= 0 or (len(heap) >= limit and rank <= heap[0][0]):
                    continue
                head = head or self._head(image, pred, i, certainty, label)
                item = (rank, next(self._tie), head)
                if len(heap) < limit:
                    heapq.heappush(heap, item)
                else:
                    heapq.heapreplace(heap, item)

    def _head(self, image, pred: ImagePrediction, i: int, certainty: float, label: str):
        color = self.colors[int(pred.classes[i]) % len(self.colors)]
        thumb = head_thumbnail(image, pred, i, color, self.thumb)
        if pred.part_labels is not None:
            self.parts_drawn.update(dict.fromkeys(pred.part_names))
        detail = (
            f"p_bad {pred.p_bad[i]:.2f}" if pred.p_bad is not None else f"score {certainty:.2f}"
        )
        where = Path(pred.source).name + ("" if pred.frame is None else f" #{pred.frame}")
        return GalleryHead(certainty, label, detail, where, encode_image(thumb, ".png"))

    def most_certain(self, sample: str) -> list[GalleryHead]:
        """The sample's kept heads of every class, most certain first."""
        heads = [
            h
            for (s, c), heap in self._heaps.items()
            if s == sample and c != BORDERLINE
            for _, _, h in heap
        ]
        return sorted(heads, key=lambda h: -h.certainty)

    def least_certain(self, sample: str) -> list[GalleryHead]:
        """The sample's borderline heads, least certain first."""
        heap = self._heaps.get((sample, BORDERLINE), [])
        return sorted((h for _, _, h in heap), key=lambda h: h.certainty)
