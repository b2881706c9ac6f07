"""Rows and summaries of inference results: one CSV row per head, one JSON line per image,
and per-sample (input folder) / per-video totals with % good.

A head cut by the image border (``at_border``, :func:`sperm_d2.masks.cut_by_border`) is listed
with its measurements but not graded into the class counts and % good: WHO counts only whole
cells. ``heads`` counts every head, ``heads_at_border`` the cut ones."""

import collections

from tabulate import tabulate

from sperm_d2.inference.morphometrics import FIELDS, measure_masks
from sperm_d2.inference.part_criteria import GRADES, REGION, PartCriteria, assess_sperm
from sperm_d2.inference.parts import head_parts
from sperm_d2.inference.types import ImagePrediction
from sperm_d2.masks import cut_by_border

#: ``class`` is the grade (the grader's when one is used, else the detector's); ``p_bad`` and
#: ``detector_class`` are filled only when a head grader graded the heads
INSTANCE_COLUMNS = (
    "file",
    "frame",
    "instance",
    "class",
    "score",
    "p_bad",
    "detector_class",
    "at_border",
    "x0",
    "y0",
    "x1",
    "y1",
) + FIELDS
#: WHO criteria from the head's parts (sperm_d2.inference.part_criteria); blank without parts
PART_COLUMNS = tuple(PartCriteria().as_row())
INSTANCE_COLUMNS += PART_COLUMNS


#: per-head values repeated in ``images.jsonl`` (the grader's are null without a grader): every
#: WHO criterion of the parts too, as in ``instances.csv`` (blank without parts)
RECORD_KEYS = ("class", "score", "p_bad", "detector_class", "at_border", "x0", "y0", "x1", "y1")
RECORD_KEYS += ("area_px", "who_flags") + PART_COLUMNS
GRADER_COLUMNS = ("p_bad", "detector_class")


def instance_rows(pred: ImagePrediction, um_per_px: float = 0.0) -> list[dict]:
    """One ``instances.csv`` row per head: file, frame, grade, detector score, ``p_bad`` and the
    detector's class (with a grader), whether the border cuts it, box and morphometrics."""
    rows = []
    graded = pred.p_bad is not None
    border = cut_by_border(pred.masks)
    for i, (morph, box, cls, score) in enumerate(
        zip(measure_masks(pred.masks, um_per_px), pred.boxes, pred.classes, pred.scores)
    ):
        row = {
            "file": pred.source,
            "frame": "" if pred.frame is None else pred.frame,
            "instance": i,
            "class": pred.class_names[int(cls)],
            "score": round(float(score), 4),
            "p_bad": round(float(pred.p_bad[i]), 4) if graded else "",
            "detector_class": (
                pred.class_names[int(pred.detector_classes[i])]
                if pred.detector_classes is not None
                else ""
            ),
            "at_border": bool(border[i]),
        }
        row.update({k: round(float(v), 1) for k, v in zip(("x0", "y0", "x1", "y1"), box)})
        row.update(morph.as_row())
        row.update(_criteria_row(pred, i, um_per_px))
        rows.append(row)
    return rows


def _criteria_row(pred: ImagePrediction, i: int, um_per_px: float) -> dict:
    """Head ``i``'s WHO criteria columns (blank without parts)."""
    if pred.part_labels is None:
        return dict.fromkeys(PART_COLUMNS, "")
    row = assess_sperm(head_parts(pred, i), pred.masks[i], um_per_px).as_row()
    return {k: "" if v is None else v for k, v in row.items()}


def who_counts(rows: list[dict]) -> dict[str, int]:
    """Criteria grades of an image's heads, and the abnormal heads' defects per region (head,
    midpiece, tail: a head counts once per region) with their sum (for the teratozoospermia
    index); empty without parts."""
    graded = [r for r in rows if r.get("who_grade")]
    if not graded:
        return {}
    out = {g: sum(r["who_grade"] == g for r in graded) for g in GRADES}
    for region in ("head", "midpiece", "tail"):
        out[f"{region}_defects"] = sum(
            r["who_grade"] == "abnormal" and _has_region(r["who_failed"], region) for r in graded
        )
    out["defects"] = sum(out[f"{g}_defects"] for g in ("head", "midpiece", "tail"))
    return out


def _has_region(failed: str, region: str) -> bool:
    return any(REGION.get(f.split(":")[0]) == region for f in failed.split(";") if f)


def image_record(pred: ImagePrediction, group: str, rows: list[dict]) -> dict:
    """The ``images.jsonl`` line of one image/frame: size, counts of the whole heads per class,
    heads cut by the border, heads with their key values (``rows``: :func:`instance_rows`)."""
    counts = {name: 0 for name in pred.class_names}
    for r in rows:
        if not r["at_border"]:
            counts[r["class"]] += 1
    return {
        "file": pred.source,
        "frame": pred.frame,
        "group": group,
        "height": pred.image_size[0],
        "width": pred.image_size[1],
        "heads": len(pred),
        "heads_at_border": sum(1 for r in rows if r["at_border"]),
        "counts": counts,
        "pct_good": pct_good(counts),
        "who": who_counts(rows),
        "instances": [
            {k: (None if k in GRADER_COLUMNS and r[k] == "" else r[k]) for k in RECORD_KEYS}
            for r in rows
        ],
    }


def pct_good(counts: dict[str, int], good: str = "good") -> float | None:
    """Percentage of heads graded ``good``; ``None`` when there are no heads, or no grades (a
    one-class detector without a head grader)."""
    total = sum(counts.values())
    if total == 0 or len(counts) < 2:
        return None
    return round(100.0 * counts.get(good, 0) / total, 2)


class SummaryAccumulator:
    """Totals per sample (input folder) and per video, built record by record (memory flat)."""

    def __init__(self, class_names: tuple[str, ...]) -> None:
        self.class_names = tuple(class_names)
        self.groups: dict[str, dict] = {}
        self.videos: dict[str, dict] = {}

    def _new(self) -> dict:
        counts = collections.Counter({c: 0 for c in self.class_names})
        return {
            "images": 0,
            "images_without_heads": 0,
            "heads": 0,
            "heads_at_border": 0,
            "counts": counts,
            "who": collections.Counter(),
        }

    def add(self, record: dict, video: str | None = None) -> None:
        """Count one image record in its sample (folder), or a frame record in its video."""
        if video is None:
            t = self.groups.setdefault(record["group"], self._new())
        else:
            t = self.videos.setdefault(video, self._new())
        t["images"] += 1
        t["heads"] += record["heads"]
        t["heads_at_border"] += record.get("heads_at_border", 0)
        t["images_without_heads"] += record["heads"] == 0
        t["counts"].update(record["counts"])
        t["who"].update(record.get("who", {}))

    def as_dict(self) -> dict:
        """JSON-ready totals: ``{"samples": {...}, "videos": {...}, "total": {...}}``; a video's
        ``images`` are its processed frames, and the total counts images and frames alike."""

        def finish(t: dict) -> dict:
            counts = dict(t["counts"])
            out = {k: v for k, v in t.items() if k not in ("counts", "who")}
            if t["who"]:
                out["who"] = dict(t["who"])
            out.update(counts)
            out["pct_good"] = pct_good(counts)
            out["heads_per_image"] = round(t["heads"] / t["images"], 3) if t["images"] else None
            return out

        total = self._new()
        for t in [*self.groups.values(), *self.videos.values()]:
            for k in ("images", "images_without_heads", "heads", "heads_at_border"):
                total[k] += t[k]
            total["counts"].update(t["counts"])
            total["who"].update(t["who"])
        return {
            "samples": {g: finish(t) for g, t in sorted(self.groups.items())},
            "videos": {v: finish(t) for v, t in sorted(self.videos.items())},
            "total": finish(total),
        }


def format_summary_table(summary: dict, class_names: tuple[str, ...]) -> str:
    """A text table: one line per sample (folder) and per video, then the total."""
    headers = ["sample", "images", "heads", "at border", *class_names, "% good", "no head"]

    def line(name: str, t: dict) -> list:
        pg = "-" if t["pct_good"] is None else f"{t['pct_good']:.1f}"
        return [
            name,
            t["images"],
            t["heads"],
            t.get("heads_at_border", 0),
            *[t[c] for c in class_names],
            pg,
            t["images_without_heads"],
        ]

    rows = [line(g, t) for g, t in summary["totals"]["samples"].items()]
    rows += [line(f"video {v} (frames)", t) for v, t in summary["totals"]["videos"].items()]
    rows.append(line("TOTAL", summary["totals"]["total"]))
    text = tabulate(rows, headers=headers, tablefmt="github")
    if summary["skipped"]:
        text += f"\nskipped {len(summary['skipped'])} input(s): see summary.json"
    return text
