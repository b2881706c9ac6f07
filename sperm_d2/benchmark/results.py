"""The benchmark's numbers: the metrics it keeps from ``evaluate.py``'s two metrics.json files,
and mean ± sample std over K-fold folds."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Sequence


def is_finite(v: Any) -> bool:
    """True for a finite int or float (not a bool, None or NaN): a value that can be averaged."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def mean_std(values: Sequence) -> dict:
    """``{"mean", "std", "n", "values"}`` over the finite values (sample std, ddof=1; 0 for one
    value). Undefined values (None/NaN, e.g. sensitivity without bad images) are left out and
    counted by ``n`` < ``len(values)``; with none left mean and std are None."""
    vals = [float(v) for v in values if is_finite(v)]
    mean = statistics.fmean(vals) if vals else None
    std = (statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else None
    return {"mean": mean, "std": std, "n": len(vals), "values": list(values)}


def aggregate_folds(fold_metrics: Sequence[dict]) -> dict:
    """Per metric key (union over folds, in first-seen order): :func:`mean_std` over folds."""
    keys = list(dict.fromkeys(k for m in fold_metrics for k in m))
    return {k: mean_std([m.get(k) for m in fold_metrics]) for k in keys}


def collect_metrics(coco_json: Path, folders_json: Path) -> dict:
    """The benchmark's numbers from the two ``evaluate.py`` metrics.json files (test part)."""
    coco = json.loads(Path(coco_json).read_text(encoding="utf-8"))
    folders = json.loads(Path(folders_json).read_text(encoding="utf-8"))
    keys = ("segm/AP", "segm/AP50", "bbox/AP", "pixellib/mAP50", "pixellib/mAP50_strict")
    out = {k: coco["test"].get(k) for k in keys}
    out["instance_threshold"] = coco.get("threshold")
    m = folders["test"]
    keys = ("accuracy", "balanced_accuracy", "sensitivity_bad", "specificity_bad", "f1_bad")
    for k in (*keys, "no_head", "images"):
        out[k] = m.get(k)
    out["image_threshold"] = folders.get("threshold")
    out["bias_bad"] = folders.get("bias_bad")
    plain = folders.get("test_top_head") or {}
    out["top_head/accuracy"] = plain.get("accuracy")
    out["top_head/balanced_accuracy"] = plain.get("balanced_accuracy")
    counts = folders.get("confusion_matrix", {}).get("counts")
    rows = folders.get("confusion_matrix", {}).get("rows_true", [])
    if counts and "bad" in rows:  # the trivial baseline on an imbalanced set (HuSHeM: 75 % bad)
        total = sum(map(sum, counts))
        out["majority_accuracy"] = sum(counts[rows.index("bad")]) / total if total else None
    return out


def collect_grader_only(eval_results_json: Path) -> dict:
    """The grader alone on the ground-truth head masks (``train_net.py --eval-only``'s
    eval_results.json): ``grader_only/accuracy``, ``grader_only/balanced_accuracy``, ..."""
    results = json.loads(Path(eval_results_json).read_text(encoding="utf-8"))
    grader = results.get("grader", {})
    keys = ("accuracy", "balanced_accuracy", "recall_good", "recall_bad", "heads")
    return {f"grader_only/{k}": grader.get(k) for k in keys}
