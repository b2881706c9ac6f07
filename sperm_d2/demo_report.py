"""``OUT/REPORT.md`` of the demo job: data, training, test metrics, inference, timings.

Reads only what the tools wrote (``timings.tsv``, ``data/annotations``, ``train/``, ``eval/``,
``infer/``) and links the plots and overlays by relative path, so the folder can be moved or
zipped and the report still opens. Run as ``python -m sperm_d2.demo_report OUT``.
"""

import csv
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import cv2
from tabulate import tabulate

from sperm_d2.atomic import atomic_write


def _load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    # The training writers may emit NaN (not JSON): Python's json reads it back as float nan.
    return json.loads(path.read_text(encoding="utf-8"))


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _timings(out: Path) -> list[str]:
    path = out / "timings.tsv"
    if not path.is_file():
        return ["(no timings.tsv)"]
    rows = list(csv.reader(path.open(encoding="utf-8"), delimiter="\t"))[1:]
    table = [[name, f"{int(s) // 60} min {int(s) % 60:02d} s"] for name, s in rows]
    return [tabulate(table, headers=["step", "wall time"], tablefmt="github")]


def _data(out: Path) -> list[str]:
    rows = []
    for split in ("train", "val", "test"):
        coco = _load(out / "data" / "annotations" / f"{split}.json")
        if coco is None:
            continue
        names = {c["id"]: c["name"] for c in coco["categories"]}
        counts = {n: 0 for n in names.values()}
        for a in coco["annotations"]:
            counts[names[a["category_id"]]] += 1
        rows.append([split, len(coco["images"]), len(coco["annotations"]), *counts.values()])
    if not rows:
        return ["(no annotations found)"]
    heads = ["split", "images", "heads", *counts.keys()]
    return [tabulate(rows, headers=heads, tablefmt="github")]


def _training(out: Path, run: str = "train") -> list[str]:
    lines = []
    cfg_path = out / run / "config.yaml"
    if cfg_path.is_file():
        lines.append(f"Config: [`{run}/config.yaml`]({run}/config.yaml) (resolved).")
    best = _load(out / run / "best_model.json")
    if best:
        lines.append(
            f"Best checkpoint on **val** by `{best['metric']}`: {_num(best['value'], 2)} at "
            f"iteration {best['iteration']} (`{run}/{best['checkpoint']}`)."
        )
        graded = {
            k.split("/", 1)[1]: v for k, v in best.get("metrics", {}).items() if "grader/" in k
        }
        if graded:
            lines.append(
                "On the val heads (ground-truth masks): "
                + ", ".join(f"{k} {_num(graded.get(k))}" for k in GRADER_KEYS if k in graded)
                + "."
            )
    for plot in sorted((out / run).glob("plot_*.png")):
        lines.append(f"\n![{plot.stem}]({run}/{plot.name})")
    return lines or [f"(no training run found in {run}/)"]


#: the head grader's val numbers shown in the report
GRADER_KEYS = ("accuracy", "balanced_accuracy", "recall_good", "recall_bad", "loss")


def _graded_by(m: dict) -> str:
    """How the heads were graded in an evaluation's metrics.json."""
    if m.get("grader"):
        return f"Heads graded by the head grader `{Path(m['grader']).name}/` (p_bad). "
    return "Heads graded by the detector's own class. "


def _evaluation(out: Path) -> list[str]:
    m = _load(out / "eval" / "metrics.json")
    if not m:
        return ["(no evaluation found)"]
    test = m["test"]
    cols = ["AP", "AP50", "AP75", "AP-good", "AP-bad"]
    rows = [[t, *[_num(test.get(f"{t}/{c}"), 1) for c in cols]] for t in ("bbox", "segm")]
    at = {k.split("/", 1)[1]: v for k, v in test.items() if k.startswith("at_threshold/")}
    return [
        _graded_by(m) + f"COCO AP (x100) on the held-out **{m['test_dataset']}** split:",
        "",
        tabulate(rows, headers=["task", *cols], tablefmt="github"),
        "",
        f"- **segm/AP50 = {_num(test.get('segm/AP50'), 1)}**; the study's per-image metric "
        f"`pixellib/mAP50` = {_num(test.get('pixellib/mAP50'))} (0-1; strict, one class per "
        f"head: {_num(test.get('pixellib/mAP50_strict'))}).",
        f"- Score threshold {_num(m['threshold'])} chosen on {m['threshold_chosen_on']}; on test "
        f"at that threshold: precision {_num(at.get('precision'))}, "
        f"recall {_num(at.get('recall'))}, F1 {_num(at.get('f1'))} (mask IoU >= 0.5, class match).",
        "- Full numbers: [`eval/metrics.json`](eval/metrics.json).",
    ]


def _folders(out: Path) -> list[str]:
    m = _load(out / "eval_folders" / "metrics.json")
    if not m:
        return ["(no class-folder evaluation found)"]
    t, plain = m["test"], m.get("test_top_head") or m["test"]
    keys = ("images", "accuracy", "balanced_accuracy", "sensitivity_bad", "specificity_bad")
    keys += ("precision_bad", "f1_bad", "no_head")
    cm = m["confusion_matrix"]
    cm_rows = [[f"true {r}", *row] for r, row in zip(cm["rows_true"], cm["counts"])]
    lines = [
        _graded_by(m) + "Each crop is graded by its best head's class after adding a bias to "
        "the bad score; no "
        f"head found counts as wrong. Score threshold {_num(m['threshold'])} and bias "
        f"{_num(m.get('bias_bad', 0.0))} chosen on {m['threshold_chosen_on']}, reported on "
        f"`{Path(m['test_root']).name}` (last column: the plain top-head rule, bias 0):",
        "",
        tabulate(
            [[k, _num(t.get(k)), _num(plain.get(k))] for k in keys],
            headers=["metric", "value", "top head"],
            tablefmt="github",
        ),
        "",
        tabulate(
            cm_rows, headers=["", *[f"pred {c}" for c in cm["cols_predicted"]]], tablefmt="github"
        ),
        "",
        "![confusion matrix](eval_folders/confusion_matrix.png)",
    ]
    if m.get("misclassified_sheet"):
        sheet = m["misclassified_sheet"]
        lines.append(f"\nMisclassified crops:\n\n![misclassified](eval_folders/{sheet})")
    return lines


def _inference(out: Path) -> list[str]:
    s = _load(out / "infer" / "summary.json")
    if not s:
        return ["(no inference found)"]
    totals = s["totals"]
    classes = s["classes"]
    rows = []
    for kind, group in (("sample", totals["samples"]), ("video (frames)", totals["videos"])):
        for name, t in group.items():
            counts = [t.get(c, 0) for c in classes]
            pct, none = _num(t["pct_good"], 1), t["images_without_heads"]
            rows.append([f"{kind}: {name}", t["images"], t["heads"], *counts, pct, none])
    lines = [
        f"{s['images_processed']} images and {s['videos_processed']} video(s) "
        f"({s['video_frames_processed']} frames) in {s['seconds']} s: "
        f"{s['images_per_second']} images/s at test size {s['test_size'][0]} px, confidence "
        f">= {s['confidence_threshold']}. " + _graded_by(s),
        "",
        tabulate(
            rows,
            headers=["input", "images", "heads", *classes, "% good", "no head"],
            tablefmt="github",
        ),
        "",
    ]
    if s["skipped"]:
        lines.append("Skipped (listed in `infer/summary.json`, never fatal):")
        lines += [f"- `{Path(k['path']).name}`: {k['reason']}" for k in s["skipped"]]
        lines.append("")
    lines.append(
        "Outputs: [`instances.csv`](infer/instances.csv) (one row per head with morphometrics and "
        "WHO flags), [`images.jsonl`](infer/images.jsonl), [`summary.json`](infer/summary.json), "
        "`labelme/` (predictions as editable labelme files), annotated videos in `infer/videos/`."
    )
    overlays = sorted((out / "infer" / "overlays").rglob("*.png"))
    picks = overlays[:2] + overlays[-2:] if len(overlays) > 4 else overlays
    if picks:
        lines.append(
            "\n" + " ".join(f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in picks)
        )
    for video in sorted((out / "infer" / "videos").glob("*_annotated.*")):
        still = _video_still(video)
        if still:
            rel = still.relative_to(out).as_posix()
            lines.append(f"\nA frame of [`{video.name}`]({video.relative_to(out).as_posix()}):\n")
            lines.append(f"![{still.stem}]({rel})")
    lines += ["", "First heads of `instances.csv`:", "", _csv_head(out / "infer" / "instances.csv")]
    return lines


def _video_still(video: Path) -> Path | None:
    """Save the middle frame of an annotated video as PNG (Markdown cannot embed MP4)."""
    cap = cv2.VideoCapture(str(video))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.set(cv2.CAP_PROP_POS_FRAMES, max(n // 2, 0))
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok:
        return None
    still = video.with_name(video.stem + "_middle.png")
    cv2.imwrite(str(still), frame)
    return still


def _csv_head(path: Path, n: int = 6) -> str:
    if not path.is_file():
        return "(missing)"
    with path.open(encoding="utf-8") as f:
        rows = [r for _, r in zip(range(n), csv.DictReader(f))]
    keep = ("file", "frame", "class", "p_bad", "detector_class", "score", "area_px", "length_um")
    keep += ("width_um", "ellipticity", "who_flags")
    table = [[os.path.basename(r["file"]) if k == "file" else r[k] for k in keep] for r in rows]
    return tabulate(table, headers=keep, tablefmt="github")


def write_demo_report(out: str | os.PathLike) -> Path:
    """Write ``out/REPORT.md`` from the demo's outputs; returns its path."""
    out = Path(out)
    sections = [
        "# sperm_d2 demo report",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()} "
        f"({os.cpu_count()} CPU cores, Python {platform.python_version()}).",
        "Synthetic microscope images (PNG + labelme) were converted to COCO splits, the CPU config "
        "and the head grader were trained from scratch, the best checkpoints on **val** were "
        "evaluated on **test**, and inference ran on unseen sample folders and a generated video.",
        "",
        "## Wall time",
        "",
        *_timings(out),
        "",
        "## Data (synthetic, `data/annotations`)",
        "",
        *_data(out),
        "",
        "## Training (`train/`)",
        "",
        *_training(out),
        "",
        "## Head grader (`grader/`)",
        "",
        "The second stage: a small CNN trained from scratch on a canonical crop of every "
        "annotated head (rotated to its long axis, scaled, mask as a 4th channel); it gives "
        "each head `p_bad` and its grade.",
        "",
        *_training(out, "grader"),
        "",
        "## Test metrics (`eval/`)",
        "",
        *_evaluation(out),
        "",
        "## Image-level grading on class folders (`eval_folders/`)",
        "",
        *_folders(out),
        "",
        "## Inference (`infer/`)",
        "",
        *_inference(out),
        "",
    ]
    path = out / "REPORT.md"
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("\n".join(sections))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sperm_d2.demo_report OUTPUT_DIR")
    print(f"wrote {write_demo_report(sys.argv[1])}")
