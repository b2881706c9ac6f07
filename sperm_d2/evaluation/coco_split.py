"""``evaluate.py`` on registered COCO splits: COCO AP (per class), ``pixellib/mAP50`` (and its
strict variant, one detection per head), and an instance-level score threshold chosen on val
(best F1 at mask IoU 0.5) and reported on test.

With a head grader (``predictor.grader``) every head carries the grader's grade, so COCO AP
per class and both ``pixellib/mAP50`` variants score the grades. One pass per split: each
image's ``Instances`` feed the COCO/PixelLib evaluators, and their score-ordered matches to the
ground truth are kept (a few numbers per head) so every threshold can be scored afterwards
without running the model again.
"""

import collections
import logging
import os
from pathlib import Path
from typing import Collection

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from tabulate import tabulate
from tqdm import tqdm

from sperm_d2.errors import InputError
from sperm_d2.evaluation.evaluators import build_evaluator
from sperm_d2.evaluation.pixellib_ap import (
    IOU_THRESHOLD,
    average_precision,
    encode_masks,
    match_predictions,
    one_per_head_keep,
    rle_iou,
)
from sperm_d2.evaluation.skips import merge_skips
from sperm_d2.image_io import read_image
from sperm_d2.inference.background import prefetch
from sperm_d2.inference.types import ImagePrediction
from sperm_d2.masks import segmentation_to_rle

logger = logging.getLogger(__name__)


def to_instances(pred: ImagePrediction) -> Instances:
    """detectron2 ``Instances`` of an :class:`ImagePrediction` (for detectron2's evaluators)."""
    inst = Instances(pred.image_size)
    inst.pred_boxes = Boxes(torch.from_numpy(pred.boxes))
    inst.scores = torch.from_numpy(pred.scores)
    inst.pred_classes = torch.from_numpy(pred.classes)
    inst.pred_masks = torch.from_numpy(pred.masks)
    return inst


def _image_problem(image: np.ndarray, record: dict) -> str | None:
    """Why a decoded image does not fit its annotations (another size), or ``None``."""
    h, w = image.shape[:2]
    if (h, w) != (record["height"], record["width"]):
        return (
            f"image is {w}x{h} px, not the {record['width']}x{record['height']} px of its "
            "annotations (replaced after tools/prepare_data.py?)"
        )
    return None


def evaluate_split(
    predictor, dataset_name: str, output_dir: str | os.PathLike, warned: Collection[str] = ()
) -> dict:
    """Run the model on a registered split; return ``{"metrics", "matches", "strict_matches",
    "images", "skipped"}``.

    ``metrics`` is the flat evaluator dict (``segm/AP50``, ``segm/AP-bad``, ``pixellib/mAP50``...);
    ``matches`` holds per image ``(scores, matched, num_gt)`` in descending score order;
    ``strict_matches`` the same for the detections left by one-per-head de-duplication.
    An image that cannot be read (or is not the size its annotations give) is skipped, one
    warning each, listed in ``skipped`` (``{"path", "reason", "dataset"}``) and left out of every
    metric with its annotations; ``images`` counts the images evaluated. The files in ``warned``
    (skipped by an earlier pass over the same images) are skipped and listed again without a
    second warning.

    Raises:
        InputError: every image of the split was skipped.
    """
    records = DatasetCatalog.get(dataset_name)
    evaluator = build_evaluator(predictor.cfg, dataset_name, output_dir, shown_images_only=True)
    evaluator.reset()
    matches, strict_matches, skipped = [], [], []
    # the records sent to the model, in order: predictions come back in the same order
    sent: collections.deque = collections.deque()

    def images(bar):
        for record, (image, error) in prefetch(records, lambda r: read_image(r["file_name"])):
            error = error or _image_problem(image, record)
            if error:
                log = logger.debug if record["file_name"] in warned else logger.warning
                log("skipped %s: %s (in dataset %s)", record["file_name"], error, dataset_name)
                skipped.append(
                    {"path": record["file_name"], "reason": error, "dataset": dataset_name}
                )
                bar.update(1)
                continue
            sent.append(record)
            yield record["file_name"], None, image

    # batched as inference is (SPERM.INFER_BATCH_SIZE), graded per batch; in the records' order
    with tqdm(total=len(records), desc=dataset_name, unit="img") as bar:
        for _, pred in predictor.predict_stream(images(bar)):
            record = sent.popleft()
            if pred.source != record["file_name"]:  # a bug, not an input problem
                raise RuntimeError(
                    f"{pred.source}: prediction out of order ({record['file_name']})"
                )
            bar.update(1)
            # with a grader every metric scores the grader's grades
            instances = to_instances(pred)
            evaluator.process([record], [{"instances": instances}])
            anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
            h, w = record["height"], record["width"]
            gt_rles = [segmentation_to_rle(a["segmentation"], h, w) for a in anns]
            gt_classes = np.array([a["category_id"] for a in anns], np.int64)
            pred_rles = encode_masks(pred.masks) if len(pred) else []
            ious = rle_iou(pred_rles, gt_rles)
            matched = match_predictions(ious, pred.scores, pred.classes, gt_classes)
            matches.append((pred.scores, matched, len(gt_classes)))
            # The same rule as ImagePrediction.one_per_head, on the RLEs already encoded.
            keep = np.sort(one_per_head_keep(pred_rles, pred.scores, IOU_THRESHOLD, pred.boxes))
            strict = match_predictions(
                ious[keep], pred.scores[keep], pred.classes[keep], gt_classes
            )
            strict_matches.append((pred.scores[keep], strict, len(gt_classes)))
    if skipped and not matches:
        json_file = getattr(MetadataCatalog.get(dataset_name), "json_file", dataset_name)
        first = skipped[0]
        raise InputError(
            f"{json_file}: nothing evaluated, all {len(skipped)} images of dataset {dataset_name} "
            f"skipped (first: {first['path']}: {first['reason']})"
        )
    results = evaluator.evaluate()
    metrics = {f"{task}/{k}": float(v) for task, d in results.items() for k, v in d.items()}
    return {
        "metrics": metrics,
        "matches": matches,
        "strict_matches": strict_matches,
        "images": len(matches),
        "skipped": skipped,
    }


def _mean_ap50(matches: list, threshold: float) -> float:
    """PixelLib-style mean per-image AP50 of the heads scoring >= ``threshold`` (NaN if no gt)."""
    aps = []
    for scores, matched, num_gt in matches:
        keep = scores >= threshold  # scores are sorted: the kept heads are a prefix
        if num_gt:
            aps.append(average_precision(matched[keep], num_gt) if keep.any() else 0.0)
    return float(np.mean(aps)) if aps else float("nan")


def threshold_metrics(matches: list, threshold: float, strict_matches: list | None = None) -> dict:
    """Instance precision/recall/F1 (mask IoU >= 0.5, class match) and PixelLib-style mean
    per-image AP50 keeping only heads scoring >= ``threshold``; with ``strict_matches`` (one
    detection per head) also its strict variant (NaN without them).

    De-duplicating then thresholding equals thresholding then de-duplicating (a head's fate
    depends only on the higher-scoring ones), so the strict matches serve every threshold.
    """
    tp = n_pred = n_gt = 0
    for scores, matched, num_gt in matches:
        keep = scores >= threshold
        tp += int(matched[keep].sum())
        n_pred += int(keep.sum())
        n_gt += num_gt
    precision = tp / n_pred if n_pred else float("nan")
    recall = tp / n_gt if n_gt else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pixellib_mAP50": _mean_ap50(matches, threshold),
        "pixellib_mAP50_strict": (
            _mean_ap50(strict_matches, threshold) if strict_matches is not None else float("nan")
        ),
    }


def choose_instance_threshold(matches: list) -> float:
    """The score threshold with the best instance F1 (ties: the lowest), from val matches."""
    scores = sorted({float(s) for sc, _, _ in matches for s in sc})
    best, best_f1 = 0.0, -1.0
    for t in [0.0, *scores]:
        f1 = threshold_metrics(matches, t)["f1"]
        if f1 > best_f1 + 1e-12:
            best, best_f1 = t, f1
    return best


def ap_table(metrics: dict, classes: tuple[str, ...]) -> str:
    """COCO AP table (x100): rows bbox/segm, columns AP, AP50, AP75, per-class AP."""
    cols = ["AP", "AP50", "AP75", "APs", "APm", "APl", *[f"AP-{c}" for c in classes]]
    rows = []
    for task in ("bbox", "segm"):
        if f"{task}/AP" in metrics:
            rows.append([task, *[metrics.get(f"{task}/{c}", float("nan")) for c in cols]])
    return tabulate(rows, headers=["task", *cols], tablefmt="github", floatfmt=".1f")


def evaluate_coco(predictor, test_dataset: str, output_dir, val_dataset: str | None = None) -> dict:
    """Evaluate ``test_dataset``; with ``val_dataset`` choose the instance threshold there first.

    The images of either split that were skipped are listed in ``skipped`` (path, reason,
    dataset, and ``parts``: the passes that lost it, ``val`` and/or ``test``; one entry per
    file, see :func:`sperm_d2.evaluation.skips.merge_skips`) and counted in ``skipped_count``;
    ``images`` counts those evaluated per split (``test``, ``val``).
    """
    out = Path(output_dir)
    grader = predictor.grader.source if predictor.grader is not None else None
    result: dict = {"test_dataset": test_dataset, "val_dataset": val_dataset, "grader": grader}
    threshold = float(predictor.cfg.SPERM.CONFIDENCE_THRESHOLD)
    result["threshold_chosen_on"] = "config SPERM.CONFIDENCE_THRESHOLD"
    images, skipped = {}, []
    if val_dataset:
        val = evaluate_split(predictor, val_dataset, out / "val")
        images["val"], skipped = val["images"], val["skipped"]
        threshold = choose_instance_threshold(val["matches"])
        result["threshold_chosen_on"] = f"{val_dataset} (best instance F1)"
        result["val"] = {
            **val["metrics"],
            **_prefixed(threshold_metrics(val["matches"], threshold, val["strict_matches"])),
        }
    # the val split may be the test split: its bad files are warned about once, listed once
    test = evaluate_split(predictor, test_dataset, out / "test", {s["path"] for s in skipped})
    images["test"] = test["images"]
    skipped = merge_skips(skipped, test["skipped"])
    result["threshold"] = threshold
    at_threshold = threshold_metrics(test["matches"], threshold, test["strict_matches"])
    result["test"] = {**test["metrics"], **_prefixed(at_threshold)}
    result["images"] = images
    result["skipped_count"] = len(skipped)
    result["skipped"] = skipped
    return result


def _prefixed(d: dict) -> dict:
    return {f"at_threshold/{k}": v for k, v in d.items()}
