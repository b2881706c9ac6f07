"""The benchmark's report: ``results.json`` and ``results.md``, a Markdown table (for README's
"Results" section) that says which split each number is on, next to the study's figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from sperm_d2.atomic import atomic_write, write_json_atomic
from sperm_d2.benchmark.results import is_finite

#: the PixelLib/TensorFlow study this project reproduces (README.md, introduction and "Results")
STUDY = {
    "pixellib/mAP50": "0.891 (study's own labelme test images)",
    "accuracy": "98 % / 98.8 % (SMIDS normal/abnormal)",
    "graded/accuracy": "98 % / 98.8 % (SMIDS normal/abnormal)",
}
#: table rows: (result key, label, kind) -- kind "ap" is COCO x100, "frac" is 0-1
ROWS = [
    ("segm/AP", "COCO segm AP (x100)", "ap"),
    ("segm/AP50", "COCO segm AP50 (x100)", "ap"),
    ("bbox/AP", "COCO bbox AP (x100)", "ap"),
    ("pixellib/mAP50", "pixellib/mAP50 (0-1)", "frac"),
    ("pixellib/mAP50_strict", "pixellib/mAP50 strict (arg-max class per head)", "frac"),
    ("accuracy", "image-level accuracy good/bad", "frac"),
    ("balanced_accuracy", "balanced accuracy (mean of the two recalls)", "frac"),
    ("sensitivity_bad", "sensitivity (bad)", "frac"),
    ("specificity_bad", "specificity (bad)", "frac"),
    ("f1_bad", "F1 (bad)", "frac"),
    ("no_head", "images with no head found", "count"),
    ("bias_bad", "bias on the bad score (chosen on val)", "num"),
    ("top_head/accuracy", "accuracy, plain top-head rule (bias 0)", "frac"),
    ("top_head/balanced_accuracy", "balanced accuracy, plain top-head rule", "frac"),
    ("majority_accuracy", "accuracy of calling every crop bad", "frac"),
    # the second stage: detector + head grader (grade and p_bad from the grader), same protocol
    ("graded/accuracy", "**detector + grader**: image-level accuracy good/bad", "frac"),
    ("graded/balanced_accuracy", "detector + grader: balanced accuracy", "frac"),
    ("graded/sensitivity_bad", "detector + grader: sensitivity (bad)", "frac"),
    ("graded/specificity_bad", "detector + grader: specificity (bad)", "frac"),
    ("graded/f1_bad", "detector + grader: F1 (bad)", "frac"),
    ("graded/bias_bad", "detector + grader: bias on p_bad (chosen on val)", "num"),
    ("graded/top_head/accuracy", "detector + grader: accuracy at p_bad 0.5 (bias 0)", "frac"),
    ("graded/top_head/balanced_accuracy", "detector + grader: balanced accuracy, bias 0", "frac"),
    ("graded/segm/AP50", "detector + grader: COCO segm AP50 (x100)", "ap"),
    ("graded/pixellib/mAP50_strict", "detector + grader: pixellib/mAP50 strict", "frac"),
    ("grader_only/accuracy", "grader alone on ground-truth masks: accuracy", "frac"),
    ("grader_only/balanced_accuracy", "grader alone on ground-truth masks: balanced acc.", "frac"),
]


#: the full-field table's rows (Sperm Parsing test part): (key, label, kind, target)
FIELD_ROWS = [
    ("segm/AP", "COCO segm AP (x100)", "ap", ">= 85"),
    ("segm/AP50", "COCO segm AP50 (x100)", "ap", ""),
    ("segm/AP75", "COCO segm AP75 (x100)", "ap", ">= 97"),
    ("bbox/AP", "COCO bbox AP (x100)", "ap", ""),
    ("heads/recall50", "head recall at mask IoU 0.5", "frac", ">= 0.98"),
    ("heads/precision50", "head precision at mask IoU 0.5", "frac", ""),
    ("heads/median_iou", "median mask IoU of matched heads", "frac", ">= 0.92"),
    ("heads/border_accuracy", "'cut by the border' flag right (matched heads)", "frac", ""),
    ("heads/gt_heads", "annotated heads (of them cut by the border)", "count", ""),
    ("infer/s_per_field", "infer.py seconds per field (overlays, CSV, report)", "num2", ""),
    ("infer/heads_per_field", "heads found per field (infer.py)", "num2", ""),
]


def fmt_value(v: Any, kind: str) -> str:
    """One number for the table: AP x100 with 1 decimal, fractions with 3, counts as ints."""
    if not is_finite(v):
        return "n/a"
    if kind == "ap":
        return f"{v:.1f}"
    if kind == "count":
        return f"{int(round(v))}"
    if kind == "num":
        return f"{v:+.3f}"
    if kind == "num2":
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_mean_std(agg: dict | None, kind: str) -> str:
    """``mean ± std`` (with ``(n=…)`` when some folds had no defined value)."""
    if not agg or agg.get("mean") is None:
        return "n/a"
    text = f"{fmt_value(agg['mean'], kind)} ± {fmt_value(agg['std'], kind)}"
    total = len(agg.get("values", []))
    return text + (f" (n={agg['n']})" if agg["n"] < total else "")


def _grader_words(meta: dict) -> str:
    """ ", grader `<config>` (KEY VALUE ...)" for the header, "" without a grader."""
    if not meta.get("grader_config"):
        return ""
    opts = " ".join(meta.get("grader_opts") or [])
    name = f" ({meta['grader_name']})" if meta.get("grader_name") else ""
    return f", grader `{meta['grader_config']}`" + (f" with `{opts}`" if opts else "") + name


def format_table(results: dict) -> str:
    """Markdown: header lines (date, machine, config, commands) and one table whose columns say
    which split each number is on, next to the study's figures."""
    meta = results["meta"]
    runs = list(results["datasets"].items())
    kinds = {(r.get("split") or {}).get("kind") == "fields" for _, r in runs if "skipped" not in r}
    configs = [meta["config"]] if False in kinds or not kinds else []
    if True in kinds and meta.get("fields_config"):
        configs.append(meta["fields_config"])
    lines = [
        f"Real-data benchmark, {meta['date']} on {meta['machine']}",
        "(config "
        + " and ".join(f"`{c}`" for c in configs)
        + f", {meta['iterations']}, split seed {meta['seed']}"
        + _grader_words(meta)
        + (", **SMOKE RUN: a few crops, a few iterations; not a result**" if meta["smoke"] else "")
        + ").",
        "",
    ]
    cols, labels = [], []
    field_runs = [(n, r) for n, r in runs if (r.get("split") or {}).get("kind") == "fields"]
    for name, res in runs:
        if (name, res) in field_runs:
            continue
        if res.get("split"):
            cols.append((res["split"]["test"], False))
            labels.append(f"{name} test split ({res['split'].get('test_images', '?')} images)")
        if res.get("kfold"):
            k = res["kfold"]
            cols.append((k["aggregate"], True))
            labels.append(f"{name} {k['k']}-fold CV, held-out folds {k['folds_run']} (mean ± std)")
    if cols:
        header = ["metric", *labels, "study (PixelLib R-101)"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for key, label, kind in ROWS:
            cells = [
                fmt_mean_std(c.get(key), kind) if agg else fmt_value(c.get(key), kind)
                for c, agg in cols
            ]
            lines.append("| " + " | ".join([label, *cells, STUDY.get(key, "")]) + " |")
        lines += [
            "",
            "Test split: stratified train/val/test "
            f"{meta['split']}; model (segm/AP50) and score thresholds chosen on val, reported "
            "on test. K-fold: final checkpoint, threshold chosen on the fold's training part, "
            "reported on the held-out part. Image-level: each crop is graded by its best head's "
            "class after adding a bias to the bad score, the bias chosen on the same part as the "
            "threshold by balanced accuracy (bias 0 is the plain top-head rule, shown too); no "
            "head found counts as wrong. SMIDS non_sperm crops are negatives for COCO AP and "
            "left out of the image-level grading. Detector + grader: the same detector finds "
            "and outlines the heads (one detection per head), the head grader trained on the "
            "same training part (selected on val by balanced accuracy; K-fold: final "
            "checkpoint) grades them, the bias on p_bad chosen like the detector's. Grader "
            "alone: the grader on the ground-truth (auto-annotated) head masks of the reported "
            "part, so detection and grading errors can be told apart.",
        ]
    if field_runs:
        lines += _field_table(field_runs, meta)
    trainings = [
        (f"{n} split{kind}", r["split"].get(key))
        for n, r in runs
        if r.get("split")
        for key, kind in (("train", ""), ("grader_train", " grader"))
    ]
    trainings += [
        (f"{n} {tag}{kind}", f.get(key))
        for n, r in runs
        if r.get("kfold")
        for tag, f in r["kfold"].get("folds", {}).items()
        for key, kind in (("train", ""), ("grader_train", " grader"))
    ]
    trainings = [(name, t) for name, t in trainings if t]
    if trainings:
        lines += [
            "",
            "Trainings (iterations, median s/iter): "
            + "; ".join(
                f"{name} {t.get('iterations', '?')} at {fmt_value(t.get('s_per_iter'), 'frac')}"
                for name, t in trainings
            )
            + ".",
        ]
    skipped = {n: r["skipped"] for n, r in runs if r.get("skipped")}
    failed = {n: r["error"] for n, r in runs if r.get("error")}
    lines += [f"- {n}: skipped ({why})" for n, why in skipped.items()]
    lines += [f"- {n}: FAILED ({why})" for n, why in failed.items()]
    if meta.get("commands"):
        lines += ["", "Commands (rerun with `" + meta["command"] + "`):", "", "```"]
        lines += meta["commands"] + ["```"]
    return "\n".join(lines) + "\n"


def _field_table(field_runs: list, meta: dict) -> list[str]:
    """Markdown lines: the full-field data sets' test numbers next to the targets."""
    header = ["metric"]
    header += [
        f"{n} test split ({r['split'].get('test_images', '?')} fields)" for n, r in field_runs
    ]
    header.append("target")
    lines = ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label, kind, target in FIELD_ROWS:
        cells = []
        for _, r in field_runs:
            t = r["split"]["test"]
            cell = fmt_value(t.get(key), kind)
            if key == "heads/gt_heads" and is_finite(t.get("heads/gt_at_border")):
                cell += f" ({int(t['heads/gt_at_border'])})"
            cells.append(cell)
        lines.append("| " + " | ".join([label, *cells, target]) + " |")
    lines += [
        "",
        f"Full fields: labelme files split train/val/test {meta['split']} (seed {meta['seed']}); "
        "one class, the head (acrosome + nucleus + vacuoles of one sperm); the detector selected "
        "on val by segm/AP, reported on test; the head-level numbers at infer.py's default "
        "score cutoff (SPERM.CONFIDENCE_THRESHOLD). Matching one-to-one at mask IoU >= 0.5; a head "
        "is cut by the border when its mask reaches within 2 px of the image edge.",
    ]
    return lines


def machine_description() -> str:
    """CPU model, core count and torch version, e.g. for the results header."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    try:  # imported here: only the header needs torch, and only its version
        import torch

        extra = f", torch {torch.__version__}, " + (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        )
    except ImportError:  # the table is still worth writing
        extra = ""
    return f"{cpu}, {os.cpu_count()} CPU cores{extra}"


def write_results(out: Path, results: dict, stem: str = "results") -> None:
    """``<stem>.json`` (NaN -> null) and ``<stem>.md``, each written atomically."""
    write_json_atomic(out / f"{stem}.json", results)
    with atomic_write(out / f"{stem}.md") as f:
        f.write(format_table(results))
