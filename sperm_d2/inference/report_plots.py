"""The plots of the run report (:mod:`sperm_d2.inference.run_report`): matplotlib's object API
on an Agg canvas, returned as PNG bytes for embedding."""

from __future__ import annotations

from array import array

import numpy as np

from sperm_d2.image_io import figure_png
from sperm_d2.inference.morphometrics import WHO_ELLIPTICITY, WHO_LENGTH_UM, WHO_WIDTH_UM

#: WHO laboratory manual, 5th ed. (2010), kept in the 6th (2021): lower reference limit of
#: morphologically normal forms (5th centile of fertile men), strict (Tygerberg) criteria
WHO_NORMAL_FORMS_PCT = 4.0
MAX_PLOTTED_SAMPLES = 8  # more samples than this: the distributions show all heads together
#: (title, CSV column with a pixel size, CSV column without, unit with, unit without, WHO range)
QUANTITIES = (
    ("length", "length_um", "length_px", "µm", "px", WHO_LENGTH_UM),
    ("width", "width_um", "width_px", "µm", "px", WHO_WIDTH_UM),
    ("ellipticity (length/width)", "ellipticity", "ellipticity", "", "", WHO_ELLIPTICITY),
    ("area", "area_um2", "area_px", "µm²", "px²", None),
)


def percent_figure(rows: list[dict]) -> bytes | None:
    """% good per sample with its interval and the WHO line, as PNG (``None``: no heads)."""
    from matplotlib.figure import Figure

    rows = [r for r in rows if r["ci"] is not None]
    if not rows:
        return None
    fig = Figure(figsize=(7, 0.9 + 0.4 * len(rows)))
    ax = fig.add_subplot(1, 1, 1)
    y = list(range(len(rows)))[::-1]
    pct = [r["pct"] for r in rows]
    err = [[p - r["ci"][0] for p, r in zip(pct, rows)], [r["ci"][1] - p for p, r in zip(pct, rows)]]
    ax.errorbar(pct, y, xerr=err, fmt="o", color="tab:blue", capsize=4, label="% good, 95 % CI")
    ax.axvline(WHO_NORMAL_FORMS_PCT, color="tab:red", linestyle="--", label="WHO reference 4 %")
    ax.set_yticks(y, labels=[r["name"] for r in rows])
    ax.set_xlim(-2, 102)
    ax.set_xlabel("% good (normal forms)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return figure_png(fig, dpi=100)


def plotted_samples(
    values: dict[str, dict[str, array]], titles: list[str]
) -> dict[str, dict[str, array]]:
    """``values`` (per sample, per quantity title) as they are, or with more samples than
    :data:`MAX_PLOTTED_SAMPLES` (too many to tell apart) all heads together as "all samples"."""
    if len(values) <= MAX_PLOTTED_SAMPLES:
        return values
    merged = {title: array("d") for title in titles}
    for per in values.values():
        for title, v in per.items():
            merged[title].extend(v)
    return {"all samples": merged}


def sample_histograms(ax, values: dict[str, dict[str, array]], title: str, bins) -> None:
    """One step histogram per sample of quantity ``title`` on ``ax`` (common ``bins``)."""
    for name, per in values.items():
        if len(per[title]):
            ax.hist(per[title], bins=bins, histtype="step", linewidth=1.5, label=name)


def finish_histogram(ax, first: bool) -> None:
    """The histograms' common dressing: heads counted, a light grid, the legend on the first."""
    ax.set_ylabel("heads")
    ax.grid(alpha=0.3)
    if first:
        ax.legend(fontsize=7)


def morphometrics_figure(values: dict[str, dict[str, array]], um: bool) -> bytes | None:
    """Histograms of length, width, ellipticity and area per sample (common bins), with the WHO
    normal ranges shaded where they apply, as PNG (``None``: no heads)."""
    from matplotlib.figure import Figure

    if not any(len(v) for per in values.values() for v in per.values()):
        return None
    values = plotted_samples(values, [q[0] for q in QUANTITIES])
    fig = Figure(figsize=(9, 6.5))
    for k, (title, _, _, unit_um, unit_px, who) in enumerate(QUANTITIES):
        ax = fig.add_subplot(2, 2, k + 1)
        unit = unit_um if um else unit_px
        everything = [x for per in values.values() for x in per[title]]
        bins = np.histogram_bin_edges(everything, bins=20) if everything else 20
        sample_histograms(ax, values, title, bins)
        if who is not None and (um or not unit):  # WHO ranges are in µm (ellipticity: none)
            ax.axvspan(*who, color="tab:green", alpha=0.15, label="WHO normal range")
        ax.set_xlabel(f"{title} ({unit})" if unit else title)
        finish_histogram(ax, k == 0)
    fig.tight_layout()
    return figure_png(fig, dpi=90)


def grades_figure(grades: dict[str, dict[str, array]]) -> bytes | None:
    """Per sample: the grader's ``p_bad`` of every whole head (histogram) and the % good of each
    field (image or frame) as a box plot, as PNG (``None``: no graded heads). On full fields the
    spread between fields of one sample shows how far one field can be trusted."""
    from matplotlib.figure import Figure

    samples = {k: v for k, v in grades.items() if len(v["field_pct_good"])}
    if not samples:
        return None
    if len(samples) > MAX_PLOTTED_SAMPLES:  # too many to tell apart: all fields together
        merged = {"p_bad": array("d"), "field_pct_good": array("d")}
        for v in samples.values():
            merged["p_bad"].extend(v["p_bad"])
            merged["field_pct_good"].extend(v["field_pct_good"])
        samples = {"all samples": merged}
    has_p = any(len(v["p_bad"]) for v in samples.values())
    fig = Figure(figsize=(9, 1.6 + 0.35 * len(samples)))
    ax = fig.add_subplot(1, 2 if has_p else 1, 1)
    names = list(samples)
    # one box per sample, horizontal (orientation=: matplotlib >= 3.10)
    ax.boxplot([list(samples[n]["field_pct_good"]) for n in names], orientation="horizontal")
    ax.set_yticks(range(1, len(names) + 1), labels=names)
    ax.axvline(WHO_NORMAL_FORMS_PCT, color="tab:red", linestyle="--", label="WHO reference 4 %")
    ax.set_xlim(-2, 102)
    ax.set_xlabel("% good per field (whole heads)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    if has_p:
        ax2 = fig.add_subplot(1, 2, 2)
        bins = np.linspace(0.0, 1.0, 21)
        for name in names:
            if len(samples[name]["p_bad"]):
                ax2.hist(samples[name]["p_bad"], bins=bins, histtype="step", label=name)
        ax2.set_xlabel("p_bad (head grader)")
        ax2.set_ylabel("heads")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig, dpi=90)
