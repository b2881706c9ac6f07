"""The ``tools/evaluate.py`` job: a COCO split or class folders -> metrics.json + text.

:func:`check_evaluation` checks the arguments, inputs and output folder before a model loads;
:func:`run_evaluation` builds the outputs in a hidden folder beside ``output_dir`` that replaces
it whole at the end, so a failed run leaves ``output_dir`` as it was.
"""

import math
import os
from pathlib import Path
from typing import Sequence

from detectron2.config import CfgNode
from tabulate import tabulate

from sperm_d2.atomic import write_json_atomic
from sperm_d2.errors import InputError
from sperm_d2.evaluation.coco_split import ap_table, evaluate_coco
from sperm_d2.evaluation.folders import evaluate_folders, list_class_folders
from sperm_d2.evaluation.skips import nothing_evaluated, skipped_lines
from sperm_d2.output_folder import check_output_dir, staged_dir

#: what ``run_evaluation`` writes at the top of its output folder (all it may replace there)
EVAL_OUTPUTS = {"metrics.json", "confusion_matrix.png", "misclassified.png", "val", "test"}
#: skipped images named in the printed summary (metrics.json lists them all)
MAX_LISTED = 20


def _label_map(label_map_path: str | None, class_names):
    from sperm_d2.data.labels import LabelMap

    if label_map_path:
        return LabelMap.load(label_map_path)
    return LabelMap.default(class_names)


def _is_split_json(path: str) -> bool:
    return Path(path).suffix.lower() == ".json" and Path(path).is_file()


def _datasets(cfg: CfgNode, dataset: str | None, val_dataset: str | None) -> tuple[str, str]:
    """The test and val split names (registered from ``cfg``), checked to exist."""
    from sperm_d2.data import register_sperm_datasets

    names = register_sperm_datasets(cfg)
    prefix = cfg.SPERM.DATASET_PREFIX
    dataset = dataset or f"{prefix}_test"
    for flag, name in (("--dataset", dataset), ("--val-dataset", val_dataset)):
        if name and name not in names:
            raise InputError(
                f"{flag} {name}: not registered from SPERM.DATA_ROOT "
                f"({cfg.SPERM.DATA_ROOT or '$SPERM_D2_DATASETS'}) with SPERM.DATASET_PREFIX "
                f"{prefix!r} (have: {', '.join(names) or 'none'})"
            )
    if val_dataset is None and f"{prefix}_val" in names and dataset != f"{prefix}_val":
        val_dataset = f"{prefix}_val"
    return dataset, val_dataset or ""


def check_evaluation(
    cfg: CfgNode,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool,
    dataset: str | None = None,
    val_dataset: str | None = None,
    folders: str | None = None,
    val_folders: str | None = None,
    label_map_path: str | None = None,
    reads: Sequence[tuple[str, str | os.PathLike]] = (),
) -> None:
    """Everything ``run_evaluation`` needs, checked before a model loads: one mode (a split or
    class folders), the label map and class folders (listed) or the registered splits, and an
    output folder that may be (re)placed and overlaps no input (``reads``: the model's files).
    Raises ``ValueError``/``KeyError``/``OSError`` in one line naming the argument."""
    if folders and (dataset or val_dataset):
        raise InputError("give --folders (class folders) or --dataset (a COCO split), not both")
    if val_folders and not folders:
        raise InputError(f"--val-folders {val_folders}: needs --folders to report on")
    keep = list(reads)
    if folders:
        label_map = _label_map(label_map_path, cfg.SPERM.CLASSES)
        for flag, root in (("--folders", folders), ("--val-folders", val_folders)):
            if root:
                if not Path(root).is_dir() and not _is_split_json(root):
                    raise InputError(f"{flag} {root}: no such folder (or COCO split .json)")
                list_class_folders(root, label_map)
                keep.append((flag, root))
        if label_map_path:
            keep.append(("--label-map", label_map_path))
    else:
        from sperm_d2.data import load_registered

        for name in filter(None, _datasets(cfg, dataset, val_dataset)):
            load_registered(name)  # read now: a broken annotation file is one line
        if cfg.SPERM.DATA_ROOT:
            keep.append(("SPERM.DATA_ROOT", cfg.SPERM.DATA_ROOT))
    check_output_dir(output_dir, overwrite, EVAL_OUTPUTS, keep=keep)


def run_evaluation(
    predictor,
    output_dir: str | Path,
    *,
    dataset: str | None = None,
    val_dataset: str | None = None,
    folders: str | None = None,
    val_folders: str | None = None,
    label_map_path: str | None = None,
    overwrite: bool = True,
) -> tuple[dict, str]:
    """Evaluate on ``folders`` (class folders, needs a label map) or on the ``dataset`` split
    (registered from the predictor's config); return ``(result, printable text)`` and write
    ``output_dir/metrics.json`` (and the figures). ``overwrite``: replace an earlier run's
    output folder (never a folder holding other files).

    Raises:
        ValueError: nothing could be evaluated (every image of --folders or of a split
            unreadable), a bad argument.
    """
    check_output_dir(output_dir, overwrite, EVAL_OUTPUTS)
    with staged_dir(output_dir) as out:
        if folders:
            label_map = _label_map(label_map_path, predictor.class_names)
            result = evaluate_folders(predictor, folders, label_map, out, val_root=val_folders)
            if not result["test"]["images"]:
                lost = [s for s in result["skipped"] if "test" in s["parts"]]
                raise InputError(nothing_evaluated(f"--folders {folders}", lost, folders))
            return result, folders_text(result)
        dataset, val_dataset = _datasets(predictor.cfg, dataset, val_dataset)
        result = evaluate_coco(predictor, dataset, out, val_dataset=val_dataset or None)
        write_json_atomic(out / "metrics.json", result)
    return result, coco_text(result, predictor.class_names)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def coco_text(result: dict, classes: tuple[str, ...]) -> str:
    """AP table on test, pixellib/mAP50 (lenient and strict), the val-chosen threshold's
    instance metrics, and the images skipped."""
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
    lost = (
        "val: left out of choosing the threshold; test: left out of every metric, annotations too"
    )
    lines += skipped_lines(result.get("skipped", []), lost, MAX_LISTED)
    return "\n".join(lines)


def folders_text(result: dict) -> str:
    """Accuracy, sensitivity/specificity for bad, F1, no-head count, the confusion matrix and
    the images skipped."""
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
    lost = "val: left out of choosing the threshold and bias; test: left out of every metric"
    skipped = skipped_lines(result.get("skipped", []), lost, MAX_LISTED)
    return "\n".join([head, table, "", cm_table, *([""] + skipped if skipped else [])])
