"""``report.html`` of an ``infer.py`` run (:mod:`sperm_d2.inference.run_report`): one
self-contained page (inline CSS, plots and head thumbnails as data URIs, no scripts) that opens
from disk in any browser."""

from __future__ import annotations

import html

from sperm_d2.image_io import png_data_uri
from sperm_d2.inference.head_gallery import GalleryHead, HeadGallery, part_color
from sperm_d2.inference.report_plots import WHO_NORMAL_FORMS_PCT


def _html_table(headers: list, rows: list, cls: str) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _html_gallery(heads: list[GalleryHead]) -> str:
    cells = "".join(
        f'<figure><img src="{png_data_uri(h.png)}" alt="{html.escape(h.label)} head">'
        f"<figcaption>{html.escape(h.label)} · {html.escape(h.detail)}<br>"
        f"{html.escape(h.where)}</figcaption></figure>"
        for h in heads
    )
    return f'<div class="gallery">{cells}</div>' if heads else "<p>No heads.</p>"


def _part_legend(names: list[str]) -> str:
    """One line naming the colour of each part's outline in the thumbnails."""
    items = []
    for name in names:
        b, g, r = part_color(name)
        # a thin dark halo: the vacuole's near-white swatch shows on the white page
        swatch = f'<span style="color:rgb({r},{g},{b});text-shadow:0 0 1px #333">&#9632;</span>'
        items.append(f"{swatch} {html.escape(name)}")
    return '<p class="legend">Part outlines: ' + " &middot; ".join(items) + "</p>"


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
    "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child{text-align:left}.gallery{display:flex;flex-wrap:wrap;gap:6px}"
    "figure{margin:0;width:96px;font-size:10px;text-align:center}figure img{max-width:96px}"
    ".below{color:#b00;font-weight:bold}.note{font-weight:bold}"
)


def render_html(
    summary: dict,
    tables: dict,
    rows: list,
    plots: dict,
    gallery: HeadGallery | None,
    criteria_note: str | None = None,
) -> str:
    """``report.html``: everything in one file (inline CSS, images as data URIs, no scripts);
    ``criteria_note`` stands above the criteria table (e.g. head size not checked)."""
    grader = summary.get("grader")
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Inference report"
        f"</title><style>{STYLE}</style></head><body><h1>Inference report</h1>",
        f"<p>Model <code>{html.escape(str(summary['weights']))}</code>"
        + (
            f", head grader <code>{html.escape(grader)}</code>"
            if grader
            else " (grades: the detector's classes)"
        )
        + f"; {summary['processed']} input(s) processed in {summary['seconds']} s.</p>",
        f"<p>% good with its 95 % Wilson interval; WHO reference: &ge; "
        f"{WHO_NORMAL_FORMS_PCT:g} % normal forms (WHO laboratory manual, 5th/6th ed.).</p>",
        "<h2>Samples</h2>",
        _html_table(*tables["samples"], "samples"),
    ]
    if plots.get("percent"):
        parts.append(f'<img class="plot" src="{png_data_uri(plots["percent"])}" alt="% good">')
    if plots.get("grades"):
        parts += [
            "<h2>Grades per field</h2>",
            "<p>% good of each field's whole heads (heads cut by the border are not graded) "
            "and the grader's p_bad of every whole head.</p>",
            f'<img class="plot" src="{png_data_uri(plots["grades"])}" alt="grades per field">',
        ]
    if tables["criteria"][1]:  # a part segmenter ran: % normal by WHO's strict criteria
        parts.append("<h2>WHO strict criteria (parts)</h2>")
        if criteria_note:
            parts.append(f'<p class="note">{html.escape(criteria_note)}</p>')
        parts.append(_html_table(*tables["criteria"], "who"))
    if plots.get("criteria"):
        parts += [
            "<p>Each criterion per sample, the normal range shaded (midpiece and tail lengths "
            "in head lengths; tails cut by the border left out, their length a lower bound "
            "only).</p>",
            f'<img class="plot" src="{png_data_uri(plots["criteria"])}" '
            'alt="WHO criteria distributions">',
        ]
    parts += ["<h2>Morphometrics: median [IQR]</h2>", _html_table(*tables["morphometrics"], "m")]
    if plots.get("morphometrics"):
        src = png_data_uri(plots["morphometrics"])
        parts.append(f'<img class="plot" src="{src}" alt="morphometric distributions">')
    parts.append("<h2>Heads, by how sure the grade is</h2>")
    if gallery and gallery.parts_drawn:
        parts.append(_part_legend(list(gallery.parts_drawn)))
    for r in rows:
        parts += [
            f"<h3>{html.escape(r['name'])}</h3>",
            "<p>Most certain first:</p>",
            _html_gallery(gallery.most_certain(r["key"]) if gallery else []),
            "<p>Least certain (borderline) first:</p>",
            _html_gallery(gallery.least_certain(r["key"]) if gallery else []),
        ]
    headers, skipped = tables["skipped"]
    parts.append(f"<h2>Skipped files ({len(skipped)})</h2>")
    parts.append(_html_table(headers, skipped, "skipped") if skipped else "<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
