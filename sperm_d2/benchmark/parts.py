"""The part segmenter's real-data benchmark (Sperm Parsing): split, train, report on test.

* split: the labelme fields are prepared with the parts label map as one split and divided as
  the head detector's split divided them (:func:`sperm_d2.data.follow_split.follow_split`), so
  both hold out the same test fields;
* train: ``tools/train_net.py`` with the field segmenter's config and/or the head segmenter's
  (each selected on val by parts/mIoU);
* evaluate: on the reported split, the semantic IoU per part, their mean and the head IoU over
  all its pixels, and per annotated head (matched at mask IoU 0.5 to a component of predicted
  head pixels, or to a detector's head with ``detector_run``): the acrosome share error in
  percentage points and the vacuole count. The head segmenter needs heads: a detector's, or the
  annotated ones (``annotated``: the outline taken as known, so that the numbers are the part
  model's error alone, without the detector's).
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sperm_d2.atomic import write_json_atomic
from sperm_d2.data.follow_split import follow_split
from sperm_d2.data.labels import PART_CLASSES
from sperm_d2.engine.part_calibration import CALIBRATION_FILE

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
PARTS_LABELS = REPO / "configs/labels/sperm_parsing_parts.yaml"
#: the part segmenters the benchmark can train: name -> (config, run folder under the output)
PART_MODELS = {
    "field": (REPO / "configs/sperm_parts_cpu.yaml", "train"),
    "head": (REPO / "configs/sperm_head_parts_cpu.yaml", "head_train"),
}
#: the issue's targets: CP-Net's part mIoU (R-101, pretrained, GPU), head IoU, share within 5
TARGETS = {"mIoU": 70.6, "IoU-head": 90.0, "acrosome_share_within_5pts_pct": 90.0}


def _call(cmd: list[str]) -> None:
    logger.info("$ %s", shlex.join(cmd))
    subprocess.run(cmd, check=True, cwd=REPO)


def prepare_parts_split(fields: Path, reference: Path, root: Path) -> Path:
    """COCO parts split under ``root`` following ``reference``'s split (prepared once)."""
    if not (root / "annotations" / "test.json").is_file():
        _call(
            [sys.executable, "tools/prepare_data.py", "--input", str(fields), "--output",
             str(root), "--label-map", str(PARTS_LABELS), "--split", "1", "--seed", "0"]
        )  # fmt: skip
        logger.info("split like %s: %s", reference, follow_split(root, reference))
    return root


def train_parts(data_root: Path, run: Path, config: Path, opts: tuple[str, ...] = ()) -> Path:
    """Train the part segmenter into ``run`` unless it holds a best model already, then choose
    its logit biases on val (``tools/calibrate_parts.py``) unless that was done."""
    if not (run / "model_best.pth").is_file():
        _call(
            [sys.executable, "tools/train_net.py", "--config-file", str(config),
             "SPERM.DATA_ROOT", str(data_root), "OUTPUT_DIR", str(run), "SEED", "0", *opts]
        )  # fmt: skip
    if not (run / CALIBRATION_FILE).is_file():
        _call([sys.executable, "tools/calibrate_parts.py", "--run", str(run)])
    return run


def detector_heads(detector_run: Path | None):
    """A function image path -> (N, H, W) head masks from a detector run, or ``None``."""
    if detector_run is None:
        return None
    from sperm_d2.inference.predictor import SpermPredictor

    predictor = SpermPredictor.from_run(str(detector_run))

    def heads(image: np.ndarray) -> np.ndarray:
        return predictor(image).masks

    return heads


def evaluate_parts(
    runs: list[Path], data_root: Path, split: str = "test", detector_run: Path | None = None,
    annotated: bool = False,
) -> dict:  # fmt: skip
    """The numbers of the module docstring on ``data_root``'s ``split`` for the part runs
    ``runs`` (a field and/or a head segmenter); the heads come from ``detector_run``, or from the
    annotation when ``annotated``."""
    from detectron2.data import DatasetCatalog

    from sperm_d2.data.label_checks import split_nucleus_groups
    from sperm_d2.data.register import register_split
    from sperm_d2.parts.assign import assign_parts
    from sperm_d2.parts.evaluator import confusion, part_metrics
    from sperm_d2.parts.head_metrics import (
        annotated_heads,
        head_components,
        match_heads,
        summarise,
    )
    from sperm_d2.parts.loader import load_field
    from sperm_d2.parts.parser import PartParser
    from sperm_d2.parts.targets import sperm_parts

    parser = PartParser.from_run(runs)
    if detector_run is not None and annotated:
        raise ValueError("heads from a detector run or from the annotation, not both")
    if parser.head is not None and detector_run is None and not annotated:
        raise ValueError("the head part segmenter needs heads: a detector run or the annotated")
    classes = list(parser.class_names)
    name = register_split(
        f"parts_bench_{split}", data_root / "annotations" / f"{split}.json", data_root, classes
    )
    records = DatasetCatalog.get(name)
    heads_of = detector_heads(detector_run)
    k = len(classes) + 1
    conf = np.zeros((k, k), np.int64)
    matches, seconds = [], 0.0
    for record in tqdm(records, desc=f"parts on {split}", unit="field"):
        image, gt = load_field(record, classes)
        h, w = gt.shape
        gt_parts = sperm_parts(record.get("annotations", []), classes, h, w)
        if annotated:
            heads = annotated_heads(gt_parts, (h, w))
        else:  # a detector's, or none: the segmenter's own head components below
            heads = None if heads_of is None else heads_of(image)
        t0 = time.perf_counter()
        if heads is None:
            labels = parser.segment(image)
            heads = head_components(labels, classes)
            pred_parts = assign_parts(labels, heads, classes)
        else:
            labels, pred_parts = parser.parse_image(image, heads)
        seconds += time.perf_counter() - t0
        conf += confusion(gt, labels, k)
        flagged = split_nucleus_groups(record.get("annotations", []), classes)
        matches += match_heads(gt_parts, heads, pred_parts, flagged)
    results = {
        "split": split,
        "fields": len(records),
        "runs": [str(r) for r in runs],
        "heads_from": (
            str(detector_run)
            if detector_run
            else ("the annotation" if annotated else "segmenter head components")
        ),
        "parts": part_metrics(conf, classes),
        "heads": summarise(matches),
        "seconds_per_field": seconds / max(len(records), 1),
        "targets": TARGETS,
    }
    return results


def format_results(r: dict) -> str:
    """A short Markdown table of the results."""
    p, h = r["parts"], r["heads"]
    rows = [("mean part IoU (5 parts)", p["mIoU"], TARGETS["mIoU"])]
    rows += [(f"IoU {n}", p[f"IoU-{n}"], None) for n in PART_CLASSES]
    rows += [("head IoU (acrosome+nucleus+vacuole)", p["IoU-head"], TARGETS["IoU-head"])]
    key = "acrosome_share_within_5pts_pct"
    rows += [
        ("annotated heads matched (%)", h.get("matched_pct"), None),
        ("acrosome share abs. error, mean (points)", h.get("acrosome_share_mae_pts"), None),
        ("acrosome share within 5 points (% of matched)", h.get(key), TARGETS[key]),
        (
            f"  same, without the {h.get('split_nucleus_heads', 0):.0f} heads annotated with a"
            " split nucleus and no acrosome",
            h.get("acrosome_share_within_5pts_unflagged_pct"),
            None,
        ),
        ("vacuole count exact (% of matched)", h.get("vacuole_count_accuracy_pct"), None),
    ]
    lines = [
        f"{r['split']} split, {r['fields']} fields, heads from {r['heads_from']}",
        "",
        "| metric | value | target |",
        "|---|---|---|",
    ]
    for label, v, t in rows:
        value = "n/a" if v is None else f"{v:.1f}"
        lines.append(f"| {label} | {value} | {'' if t is None else f'{t:g}'} |")
    return "\n".join(lines)


def run_parts_benchmark(
    fields: Path, reference: Path, output: Path, split: str, detector_run: Path | None,
    train: bool, models: tuple[str, ...] = ("field", "head"), annotated: bool = False,
) -> dict:  # fmt: skip
    """Split, (train,) evaluate the part segmenters ``models`` (keys of :data:`PART_MODELS`) on
    the heads of ``detector_run`` or, when ``annotated``, the annotated heads; writes
    ``output/parts_results_<split>[_annotated_heads].json`` and ``.md``."""
    if "head" in models and detector_run is None and (train or not annotated):
        raise ValueError("the head part segmenter needs --detector (its heads, its negatives)")
    data_root = prepare_parts_split(fields, reference, output / "data")
    runs = []
    for name in models:
        config, folder = PART_MODELS[name]
        runs.append(output / folder)
        # the head segmenter learns to turn down the detector's false heads (hard negatives)
        opts = ("SPERM.PARTS.NEGATIVES_RUN", str(detector_run)) if name == "head" else ()
        if train:
            train_parts(data_root, runs[-1], config, opts)
    results = evaluate_parts(runs, data_root, split, detector_run, annotated)
    stem = f"parts_results_{split}" + ("_annotated_heads" if annotated else "")
    write_json_atomic(output / f"{stem}.json", results)
    (output / f"{stem}.md").write_text(format_results(results) + "\n")
    return results
