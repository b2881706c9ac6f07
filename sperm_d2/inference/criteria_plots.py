"""The distribution of each WHO strict criterion in the run report (a part segmenter ran): the
``who_*`` values of ``instances.csv``, fed row by row, and their histograms per sample with each
criterion's normal range (:mod:`sperm_d2.inference.part_criteria`) shaded.

Heads cut by the border count as in the morphometrics (their measurements are listed); a tail cut
by the border is left out of the tail lengths, its length being only a lower bound (the criteria
do not judge it either). The midpiece and tail lengths are in head lengths, as the criteria judge
them, so they need no pixel size.
"""

from __future__ import annotations

import dataclasses
from array import array
from typing import Callable

import numpy as np

from sperm_d2.image_io import figure_png
from sperm_d2.inference.part_criteria import (
    MIDPIECE_LENGTH_RATIO,
    MIDPIECE_MAX_ANGLE_DEG,
    TAIL_MIN_LENGTH_RATIO,
    WHO_ACROSOME_SHARE,
    WHO_MAX_VACUOLE_SHARE,
    WHO_MAX_VACUOLES,
)
from sperm_d2.inference.report_plots import finish_histogram, plotted_samples, sample_histograms


def _number(row: dict, column: str) -> float | None:
    """A CSV cell as a float; ``None`` when blank (the part is missing, or no parts ran)."""
    v = row.get(column) or ""
    return None if v in ("", "None") else float(v)


def _in_head_lengths(row: dict, column: str) -> float | None:
    """A pixel length in head lengths (both in pixels: scale-free, as the criteria judge it)."""
    v, head = _number(row, column), _number(row, "who_head_length_px")
    return None if v is None or not head else v / head


def _tail_length(row: dict) -> float | None:
    if "tail_cut_by_border" in (row.get("who_not_assessed") or ""):
        return None  # a lower bound only
    return _in_head_lengths(row, "who_tail_length_px")


@dataclasses.dataclass(frozen=True)
class Criterion:
    """One plotted criterion: how to read it from a CSV row, and its normal range (``None`` for
    no upper limit)."""

    title: str
    unit: str
    value: Callable[[dict], float | None]
    normal: tuple[float, float | None]
    integer: bool = False  # counts: one bin per value


CRITERIA = (
    Criterion(
        "acrosome share of the head",
        "%",
        lambda r: _number(r, "who_acrosome_share"),
        WHO_ACROSOME_SHARE,
    ),
    Criterion(
        "vacuoles",
        "count",
        lambda r: _number(r, "who_vacuole_count"),
        (0, WHO_MAX_VACUOLES),
        integer=True,
    ),
    Criterion(
        "vacuole share of the head",
        "%",
        lambda r: _number(r, "who_vacuole_share"),
        (0.0, WHO_MAX_VACUOLE_SHARE),
    ),
    Criterion(
        "midpiece length",
        "head lengths",
        lambda r: _in_head_lengths(r, "who_midpiece_length_px"),
        MIDPIECE_LENGTH_RATIO,
    ),
    Criterion(
        "midpiece angle to the head axis",
        "°",
        lambda r: _number(r, "who_midpiece_angle_deg"),
        (0.0, MIDPIECE_MAX_ANGLE_DEG),
    ),
    Criterion("tail length", "head lengths", _tail_length, (TAIL_MIN_LENGTH_RATIO, None)),
)


class CriteriaReader:
    """Per sample key, per criterion title, the values of the ``instances.csv`` rows it is fed
    (the run report's one pass over the file); only samples with heads that have parts get an
    entry."""

    def __init__(self, sample_of: dict[str, str]) -> None:
        self.sample_of = sample_of
        self.values: dict[str, dict[str, array]] = {}

    def add(self, row: dict[str, str]) -> None:
        """Take one ``instances.csv`` row."""
        key = self.sample_of.get(row["file"])
        # no head area: no parts ran, or the head's mask was empty (its vacuole count and
        # share would read 0, measured on nothing)
        if key is None or not _number(row, "who_head_area_px"):
            return
        per = self.values.setdefault(key, {c.title: array("d") for c in CRITERIA})
        for c in CRITERIA:
            v = c.value(row)
            if v is not None:
                per[c.title].append(v)

    def result(self) -> dict[str, dict[str, array]]:
        """The values read so far."""
        return self.values


def _bins(values: list[float], integer: bool) -> np.ndarray | int:
    """Common bins of every sample's values: one per integer for counts, else 20."""
    if integer:
        return np.arange(-0.5, (max(values) if values else 0) + 1.5)
    return np.histogram_bin_edges(values, bins=20) if values else 20


def criteria_figure(values: dict[str, dict[str, array]]) -> bytes | None:
    """Histograms of every criterion per sample (common bins), the normal ranges shaded, as PNG
    (``None``: no values, e.g. no part segmenter ran)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not any(len(v) for per in values.values() for v in per.values()):
        return None
    values = plotted_samples(values, [c.title for c in CRITERIA])
    fig = Figure(figsize=(11, 6.5))
    for k, c in enumerate(CRITERIA):
        ax = fig.add_subplot(2, 3, k + 1)
        everything = [x for per in values.values() for x in per[c.title]]
        bins = _bins(everything, c.integer)
        sample_histograms(ax, values, c.title, bins)
        if not everything:
            ax.text(0.5, 0.5, "none measured", transform=ax.transAxes, ha="center")
        lo, hi = c.normal
        if hi is None:  # no upper limit: shade up to the largest value (or a little past lo)
            hi = max(max(everything, default=lo), 1.2 * lo)
        if c.integer:  # whole bars: the bins are centred on the counts
            lo, hi = lo - 0.5, hi + 0.5
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.axvspan(lo, hi, color="tab:green", alpha=0.15, label="normal range")
        ax.set_xlabel(f"{c.title} ({c.unit})")
        finish_histogram(ax, k == 0)
    fig.tight_layout()
    return figure_png(fig, dpi=90)
