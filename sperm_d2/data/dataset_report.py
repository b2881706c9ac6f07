"""The data report: counts per class and split, instances per image, head sizes, problems."""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from sperm_d2.cli import printable
from sperm_d2.data.coco import image_class
from sperm_d2.data.convert import FileResult
from sperm_d2.data.problems import Problem, count_problems

_PCTS = (0, 5, 25, 50, 75, 95, 100)


def _distribution(values: Sequence[float]) -> dict:
    if not len(values):
        return {}
    q = np.percentile(np.asarray(values, dtype=float), _PCTS)
    return {
        ("min" if p == 0 else "max" if p == 100 else f"p{p}"): round(float(v), 1)
        for p, v in zip(_PCTS, q)
    }


def split_stats(results: Sequence[FileResult], classes: Sequence[str]) -> dict:
    """Images, negatives, instances per class and image-level classes of one split."""
    inst = Counter(i["class"] for r in results for i in r.instances)
    return {
        "images": len(results),
        "negatives": sum(1 for r in results if not r.instances),
        "instances": {c: inst.get(c, 0) for c in classes},
        "image_classes": dict(sorted(Counter(image_class(r) for r in results).items())),
    }


def build_report(
    kept: Sequence[FileResult],
    *,
    splits: Mapping[str, Sequence[FileResult]],
    problems: Sequence[Problem],
    classes: Sequence[str],
    files_found: int,
    settings: Mapping,
) -> dict:
    """Assemble the JSON-serialisable report."""
    per_image = Counter(len(r.instances) for r in kept)
    sizes = [float(np.sqrt(i["area"])) for r in kept for i in r.instances]
    long_side = [float(max(i["bbox"][2], i["bbox"][3])) for r in kept for i in r.instances]
    ignored = Counter()
    for r in kept:
        ignored.update(r.ignored_labels)
    skipped = {p.file for p in problems if p.level == "error"}
    return {
        "settings": dict(settings),
        "files": {"found": files_found, "converted": len(kept), "skipped": len(skipped)},
        "total": split_stats(kept, classes),
        "splits": {name: split_stats(rs, classes) for name, rs in splits.items()},
        "instances_per_image": {str(k): v for k, v in sorted(per_image.items())},
        "head_size_px": {
            "sqrt_area": _distribution(sizes),
            "bbox_long_side": _distribution(long_side),
        },
        "ignored_labels": dict(sorted(ignored.items())),
        "problems": {"counts": count_problems(problems), "list": [p.to_dict() for p in problems]},
    }


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths)))
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: Mapping, max_problems: int = 20) -> str:
    """A human-readable summary of :func:`build_report`'s output (tables, then problems; with
    ``max_problems`` 0 only their counts)."""
    classes = list(report["total"]["instances"])
    rows = []
    for name, s in list(report["splits"].items()) + [("total", report["total"])]:
        rows.append([name, s["images"], s["negatives"], *[s["instances"][c] for c in classes]])
    out = [_table(["split", "images", "negatives", *classes], rows)]
    f = report["files"]
    out.append(f"files: {f['found']} found, {f['converted']} converted, {f['skipped']} skipped")
    ipi = report["instances_per_image"]
    out.append("instances per image: " + ", ".join(f"{k}: {v}" for k, v in ipi.items()))
    size = report["head_size_px"]["sqrt_area"]
    if size:
        out.append("head size sqrt(area) px: " + ", ".join(f"{k} {v}" for k, v in size.items()))
    if report["ignored_labels"]:
        out.append(
            "ignored labels: " + ", ".join(f"{k}: {v}" for k, v in report["ignored_labels"].items())
        )
    for level, counts in report["problems"]["counts"].items():
        if counts:
            out.append(f"{level}s: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    plist = report["problems"]["list"] if max_problems else []
    for p in plist[:max_problems]:
        out.append(f"  {problem_line(p)}")
    if len(plist) > max_problems:
        out.append(f"  ... {len(plist) - max_problems} more in report.json")
    return "\n".join(out)


def problem_line(problem: Mapping) -> str:
    """One report problem (a :meth:`Problem.to_dict`) as the line a person reads."""
    return printable(f"{problem['level'].upper()} {problem['file']}: {problem['message']}")
