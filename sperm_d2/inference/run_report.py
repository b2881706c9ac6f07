"""The report of one ``infer.py`` run: ``report.html`` (self-contained: plots and head thumbnails
embedded as base64 PNG, opens from disk in any browser, :mod:`sperm_d2.inference.report_html`)
and ``REPORT.md`` (the same tables).

Per sample (input folder) and per video: heads found, % good with its 95 % Wilson interval
against the WHO lower reference limit for normal forms, morphometric distributions (length,
width, ellipticity, area), a gallery of heads sorted by how sure their grade is
(:mod:`sperm_d2.inference.head_gallery`), and the skipped files; with a part segmenter also
the WHO strict criteria and their distributions (:mod:`sperm_d2.inference.criteria_plots`). It
reads what the run already wrote (``summary.json``'s totals, ``instances.csv`` row by row in
one pass that feeds every reader), so memory does not grow with the number of images.
"""

from __future__ import annotations

import logging
import math
from array import array
from pathlib import Path

from tabulate import tabulate

from sperm_d2.atomic import write_bytes_atomic
from sperm_d2.inference.criteria_plots import CriteriaReader, criteria_figure
from sperm_d2.inference.criteria_report import CRITERIA_HEADERS, criteria_rows, no_scale_note
from sperm_d2.inference.head_gallery import HeadGallery
from sperm_d2.inference.report_html import render_html
from sperm_d2.inference.report_plots import (
    QUANTITIES,
    WHO_NORMAL_FORMS_PCT,
    grades_figure,
    morphometrics_figure,
    percent_figure,
)
from sperm_d2.inference.report_readers import (
    GradesReader,
    MorphometricsReader,
    NoScaleReader,
    read_instances,
)

logger = logging.getLogger(__name__)

HTML_NAME, MD_NAME = "report.html", "REPORT.md"


def sample_key(name: str, video: bool = False) -> str:
    """How the report names a sample (an input folder) or a video, and keys its heads."""
    return f"video {name}" if video else f"sample {name}"


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval (95 % for ``z`` = 1.96) of a proportion ``k / n``, in percent;
    ``None`` for ``n`` = 0. Unlike the normal approximation it stays inside 0-100 and is sound
    for the few heads (and 0 % or 100 %) a sample can have."""
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # rounding can leave p a hair outside [centre - half, centre + half] at 0 % and 100 %
    return 100.0 * max(0.0, min(p, centre - half)), 100.0 * min(1.0, max(p, centre + half))


def who_mark(pct: float | None, ci: tuple[float, float] | None) -> str:
    """Where a sample's % good stands against the WHO reference (>= 4 % normal forms)."""
    if pct is None or ci is None:
        return "no heads"
    ref = WHO_NORMAL_FORMS_PCT
    if ci[0] >= ref:
        return f"above {ref:g} %"
    if ci[1] < ref:
        return f"BELOW {ref:g} %"
    return f"{'at/above' if pct >= ref else 'below'} {ref:g} % (interval spans it)"


def _named_totals(summary: dict) -> list[tuple[str, dict]]:
    """(report name, totals) of every sample, then every video."""
    totals = summary["totals"]
    named = [(sample_key(g), t) for g, t in totals["samples"].items()]
    return named + [(sample_key(v, video=True), t) for v, t in totals["videos"].items()]


def sample_rows(summary: dict) -> list[dict]:
    """One row per sample and per video: counts, % good, its interval and the WHO mark."""
    classes = summary["classes"]
    # a one-class (head-finding) detector without a grader grades nothing: no % good
    good = ("good" if "good" in classes else classes[0]) if len(classes) > 1 else None
    rows = []
    for name, t in _named_totals(summary):
        n = sum(int(t.get(c, 0)) for c in classes)
        k = int(t.get(good, 0)) if good else 0
        pct = 100.0 * k / n if n and good else None
        ci = wilson_interval(k, n) if good else None
        rows.append(
            {
                "name": name,
                "key": name,
                "images": t["images"],
                "heads": t["heads"],
                "at_border": t.get("heads_at_border", 0),
                "counts": {c: int(t.get(c, 0)) for c in classes},
                "no_head": t["images_without_heads"],
                "pct": pct,
                "ci": ci,
                "who": who_mark(pct, ci),
            }
        )
    return rows


def _fmt_pct(r: dict) -> tuple[str, str]:
    if r["pct"] is None:
        return "-", "-"
    return f"{r['pct']:.1f}", f"{r['ci'][0]:.1f}-{r['ci'][1]:.1f}"


def _median_iqr(v: array) -> str:
    if not len(v):
        return "-"
    s = sorted(v)
    q = [s[min(len(s) - 1, int(round(f * (len(s) - 1))))] for f in (0.25, 0.5, 0.75)]
    return f"{q[1]:.2f} [{q[0]:.2f}-{q[2]:.2f}]"


def _tables(
    summary: dict, rows: list[dict], values: dict, um: bool, criteria: list[list]
) -> dict[str, tuple]:
    """(headers, rows) of every table in the report, shared by the HTML and the Markdown."""
    classes = summary["classes"]
    counts = [
        [
            r["name"],
            r["images"],
            r["heads"],
            r["at_border"],
            *[r["counts"][c] for c in classes],
            *_fmt_pct(r),
            r["who"],
            r["no_head"],
        ]
        for r in rows
    ]
    units = [(q[0], q[3] if um else q[4]) for q in QUANTITIES]
    morph = [
        [r["name"], *[_median_iqr(values.get(r["key"], {}).get(t, array("d"))) for t, _ in units]]
        for r in rows
    ]
    skipped = [[s["path"], s["reason"]] for s in summary.get("skipped", [])]
    skipped += [[s["path"], s["reason"]] for s in summary.get("incomplete", [])]
    return {
        "samples": (
            [
                "sample",
                "images",
                "heads",
                "at border (not graded)",
                *classes,
                "% good",
                "95 % CI",
                "WHO (>= 4 %)",
                "no head",
            ],
            counts,
        ),
        "morphometrics": (
            ["sample"] + [f"{t} ({u})" if u else t for t, u in units],
            morph,
        ),
        "skipped": (["file", "reason"], skipped),
        "criteria": (CRITERIA_HEADERS, criteria),
    }


def render_markdown(summary: dict, tables: dict, criteria_note: str | None = None) -> str:
    """``REPORT.md``: the run, the tables (the criteria's with ``criteria_note`` above it); the
    plots and the gallery are in ``report.html``."""
    out = [
        "# Inference report",
        "",
        f"Model `{summary['weights']}`"
        + (
            f", head grader `{summary['grader']}`"
            if summary.get("grader")
            else " (grades: the detector's classes)"
        )
        + f"; {summary['processed']} "
        "input(s) processed. Plots and the head gallery: `report.html`.",
        "",
        f"% good with its 95 % Wilson interval; WHO reference: >= {WHO_NORMAL_FORMS_PCT:g} % "
        "normal forms (WHO laboratory manual, 5th/6th ed.).",
        "",
    ]
    for title, key in (("Samples", "samples"), ("Morphometrics: median [IQR]", "morphometrics")):
        headers, rows = tables[key]
        out += [f"## {title}", "", tabulate(rows, headers=headers, tablefmt="github"), ""]
    headers, rows = tables["criteria"]
    if rows:  # a part segmenter ran
        out += ["## WHO strict criteria (parts)", ""]
        out += [f"**{criteria_note}**", ""] if criteria_note else []
        out += [tabulate(rows, headers, "github"), ""]
    headers, rows = tables["skipped"]
    out += [f"## Skipped files ({len(rows)})", ""]
    out += [tabulate(rows, headers=headers, tablefmt="github") if rows else "None.", ""]
    return "\n".join(out)


def write_run_report(out_dir: Path, summary: dict, gallery: HeadGallery | None) -> list[Path]:
    """Write ``report.html`` and ``REPORT.md`` into ``out_dir`` (which holds the run's
    ``instances.csv``); returns their paths."""
    out_dir = Path(out_dir)
    um = bool(summary.get("um_per_px"))
    rows = sample_rows(summary)
    sample_of = gallery.sample_of if gallery else {}
    criteria = criteria_rows(_named_totals(summary), wilson_interval, who_mark)
    morphometrics = MorphometricsReader(sample_of, um)
    # % good per field needs a "good" grade (a one-class detector without a grader has none)
    grades = GradesReader(sample_of, "good") if "good" in summary["classes"] else None
    distributions = CriteriaReader(sample_of) if criteria else None  # a part segmenter ran
    no_scale = NoScaleReader() if criteria else None
    readers = [r for r in (morphometrics, grades, distributions, no_scale) if r is not None]
    read_instances(out_dir / "instances.csv", readers)  # one pass for every reader
    values = morphometrics.result()
    tables = _tables(summary, rows, values, um, criteria)
    plots = {
        "percent": percent_figure(rows),
        "morphometrics": morphometrics_figure(values, um),
        "grades": grades_figure(grades.result() if grades is not None else {}),
    }
    if distributions is not None:
        plots["criteria"] = criteria_figure(distributions.result())
    note = no_scale_note(*no_scale.result()) if no_scale is not None else None
    page = render_html(summary, tables, rows, plots, gallery, criteria_note=note)
    write_bytes_atomic(out_dir / HTML_NAME, page.encode("utf-8"))
    write_bytes_atomic(out_dir / MD_NAME, render_markdown(summary, tables, note).encode("utf-8"))
    return [out_dir / HTML_NAME, out_dir / MD_NAME]
