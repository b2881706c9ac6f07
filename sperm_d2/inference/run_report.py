"""The report of one ``infer.py`` run: ``report.html`` (self-contained: plots and head thumbnails
embedded as base64 PNG, opens from disk in any browser, :mod:`sperm_d2.inference.report_html`)
and ``REPORT.md`` (the same tables).

Per sample (input folder) and per video: heads found, % good with its 95 % Wilson interval
against the WHO lower reference limit for normal forms, morphometric distributions (length,
width, ellipticity, area), a gallery of heads sorted by how sure their grade is
(:mod:`sperm_d2.inference.head_gallery`), and the skipped files; with a part segmenter also
the WHO strict criteria and their distributions (:mod:`sperm_d2.inference.criteria_plots`). It
reads what the run already wrote (``summary.json``'s totals, ``instances.csv`` row by row), so
memory does not grow with the number of images.
"""

from __future__ import annotations

import csv
import logging
import math
from array import array
from pathlib import Path

from tabulate import tabulate

from sperm_d2.atomic import write_bytes_atomic
from sperm_d2.inference.criteria_plots import criteria_figure, read_criteria
from sperm_d2.inference.criteria_report import CRITERIA_HEADERS, criteria_rows
from sperm_d2.inference.head_gallery import HeadGallery
from sperm_d2.inference.report_html import render_html
from sperm_d2.inference.report_plots import (
    QUANTITIES,
    WHO_NORMAL_FORMS_PCT,
    grades_figure,
    morphometrics_figure,
    percent_figure,
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


def read_morphometrics(
    csv_path: Path, sample_of: dict[str, str], um: bool
) -> dict[str, dict[str, array]]:
    """Per sample key, per quantity title, the values of ``instances.csv`` (read row by row)."""
    values: dict[str, dict[str, array]] = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            key = sample_of.get(row["file"])
            if key is None:
                continue
            per = values.setdefault(key, {q[0]: array("d") for q in QUANTITIES})
            for title, col_um, col_px, *_ in QUANTITIES:
                v = row.get(col_um if um else col_px) or ""
                if v not in ("", "None"):
                    per[title].append(float(v))
    return values


def read_grades(csv_path: Path, sample_of: dict[str, str], good: str) -> dict[str, dict]:
    """Per sample key: ``p_bad`` of its whole heads (graded runs) and the % good of each of its
    fields (image or video frame) with whole heads, read from ``instances.csv`` row by row (a
    field's rows are consecutive, so one field is held at a time)."""
    grades: dict[str, dict[str, array]] = {}
    field, counts = None, [0, 0]

    def close() -> None:
        if field is not None and counts[1]:
            grades[field[0]]["field_pct_good"].append(100.0 * counts[0] / counts[1])

    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            key = sample_of.get(row["file"])
            if key is None or row.get("at_border") == "True":
                continue
            per = grades.setdefault(key, {"p_bad": array("d"), "field_pct_good": array("d")})
            if (key, row["file"], row["frame"]) != field:
                close()
                field, counts = (key, row["file"], row["frame"]), [0, 0]
            counts[0] += row["class"] == good
            counts[1] += 1
            if row.get("p_bad") not in (None, ""):
                per["p_bad"].append(float(row["p_bad"]))
    close()
    return grades


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


def _tables(summary: dict, rows: list[dict], values: dict, um: bool) -> dict[str, tuple]:
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
        "criteria": (
            CRITERIA_HEADERS,
            criteria_rows(_named_totals(summary), wilson_interval, who_mark),
        ),
    }


def render_markdown(summary: dict, tables: dict) -> str:
    """``REPORT.md``: the run, the tables; the plots and the gallery are in ``report.html``."""
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
        out += ["## WHO strict criteria (parts)", "", tabulate(rows, headers, "github"), ""]
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
    values = read_morphometrics(out_dir / "instances.csv", sample_of, um)
    tables = _tables(summary, rows, values, um)
    # % good per field needs a "good" grade (a one-class detector without a grader has none)
    graded = "good" in summary["classes"]
    grades = read_grades(out_dir / "instances.csv", sample_of, "good") if graded else {}
    plots = {
        "percent": percent_figure(rows),
        "morphometrics": morphometrics_figure(values, um),
        "grades": grades_figure(grades),
    }
    if tables["criteria"][1]:  # a part segmenter ran: the criteria's distributions too
        plots["criteria"] = criteria_figure(read_criteria(out_dir / "instances.csv", sample_of))
    page = render_html(summary, tables, rows, plots, gallery)
    write_bytes_atomic(out_dir / HTML_NAME, page.encode("utf-8"))
    write_bytes_atomic(out_dir / MD_NAME, render_markdown(summary, tables).encode("utf-8"))
    return [out_dir / HTML_NAME, out_dir / MD_NAME]
