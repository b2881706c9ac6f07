"""The ``tools/evaluate.py`` job: a COCO split or class folders -> metrics.json + text."""

import math
from pathlib import Path

from tabulate import tabulate

from sperm_d2.atomic import write_json_atomic
from sperm_d2.evaluation.coco_split import ap_table, evaluate_coco
from sperm_d2.evaluation.folders import evaluate_folders


def run_evaluation(
    predictor,
    output_dir: str | Path,
    dataset: str | None = None,
    val_dataset: str | None = None,
    folders: str | None = None,
    val_folders: str | None = None,
    label_map_path: str | None = None,
) -> tuple[dict, str]:
    """Evaluate on ``folders`` (class folders, needs a label map) or on the ``dataset`` split
    (registered from the predictor's config); return ``(result, printable text)`` and write
    ``output_dir/metrics.json``."""
    out = Path(output_dir)
    if folders:
        from sperm_d2.data.labels import LabelMap

        label_map = (
            LabelMap.load(label_map_path)
            if label_map_path
            else LabelMap.default(predictor.class_names)
        )
        result = evaluate_folders(predictor, folders, label_map, out, val_root=val_folders)
        return result, folders_text(result)
    from sperm_d2.data import register_sperm_datasets

    names = register_sperm_datasets(predictor.cfg)
    prefix = predictor.cfg.SPERM.DATASET_PREFIX
    dataset = dataset or f"{prefix}_test"
    if dataset not in names:
        raise KeyError(
            f"dataset {dataset!r} is not registered (have: {', '.join(names) or 'none'})"
        )
    if val_dataset is None and f"{prefix}_val" in names and dataset != f"{prefix}_val":
        val_dataset = f"{prefix}_val"
    result = evaluate_coco(predictor, dataset, out, val_dataset=val_dataset or None)
    write_json_atomic(out / "metrics.json", result)
    return result, coco_text(result, predictor.class_names)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def coco_text(result: dict, classes: tuple[str, ...]) -> str:
    """AP table on test, pixellib/mAP50 (lenient and strict), and the val-chosen threshold's
    instance metrics."""
    test = result["test"]
    lines = [f"COCO AP on {result['test_dataset']} (x100):", ap_table(test, classes)]
    lines.append(
        f"pixellib/mAP50 (0-1): {_fmt(test.get('pixellib/mAP50'))}, strict (one detection per "
        f"head, its arg-max class): {_fmt(test.get('pixellib/mAP50_strict'))}"
    )
    at = {k.split("/", 1)[1]: v for k, v in test.items() if k.startswith("at_threshold/")}
    lines.append(
        f"score threshold {result['threshold']:.3f} (chosen on {result['threshold_chosen_on']}): "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in at.items() if k != "threshold")
    )
    return "\n".join(lines)


def folders_text(result: dict) -> str:
    """Accuracy, sensitivity/specificity for bad, F1, no-head count and the confusion matrix."""
    m, plain = result["test"], result.get("test_top_head") or result["test"]
    keys = (
        "images",
        "accuracy",
        "balanced_accuracy",
        "sensitivity_bad",
        "specificity_bad",
        "precision_bad",
        "f1_bad",
        "no_head",
    )
    table = tabulate(
        [[k, *(x[k] if isinstance(x[k], int) else _fmt(x[k]) for x in (m, plain))] for k in keys],
        tablefmt="github",
        headers=["metric", f"bias {result.get('bias_bad', 0.0):+.3f} on bad", "top head (bias 0)"],
    )
    cm = result["confusion_matrix"]
    cm_rows = [[f"true {r}", *row] for r, row in zip(cm["rows_true"], cm["counts"])]
    cm_table = tabulate(
        cm_rows, headers=["", *[f"pred {c}" for c in cm["cols_predicted"]]], tablefmt="github"
    )
    head = (
        f"image-level grading of {result['test_root']} at score threshold "
        f"{result['threshold']:.3f} (chosen on {result['threshold_chosen_on']})"
    )
    return "\n".join([head, table, "", cm_table])
