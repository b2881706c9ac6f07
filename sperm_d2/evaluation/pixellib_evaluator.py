"""``PixellibEvaluator``: detectron2 evaluator producing ``pixellib/mAP50`` and its strict variant
``pixellib/mAP50_strict`` (one detection per head; see pixellib_ap)."""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from sperm_d2.evaluation.pixellib_ap import (
    IOU_THRESHOLD,
    encode_masks,
    image_ap50,
    image_ap50_strict,
    mean_image_ap,
    rle_iou,
)
from sperm_d2.masks import segmentation_to_rle

logger = logging.getLogger(__name__)


def dataset_ground_truth(dataset_name: str) -> dict[int, tuple[list[dict], np.ndarray]]:
    """image_id -> (RLEs, category ids) of a registered dataset's annotated heads (crowd
    regions left out)."""
    gt = {}
    for record in DatasetCatalog.get(dataset_name):
        anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        h, w = record["height"], record["width"]
        rles = [segmentation_to_rle(a["segmentation"], h, w) for a in anns]
        gt[record["image_id"]] = (rles, np.array([a["category_id"] for a in anns], np.int64))
    return gt


class PixellibEvaluator(DatasetEvaluator):
    """Per-image mask AP@0.5 with class match, averaged over images (0-1), as PixelLib reports it:
    ``mAP50`` on every detection, ``mAP50_strict`` with one detection (arg-max class) per head.

    Args:
        dataset_name: a registered dataset with instance annotations (polygons or RLE).
        score_threshold: detections below it are ignored (the model's own
            ``ROI_HEADS.SCORE_THRESH_TEST`` applies first); Matterport evaluated at its
            ``DETECTION_MIN_CONFIDENCE``.
        distributed: gather per-image results from every process before averaging.
    """

    def __init__(self, dataset_name: str, score_threshold: float = 0.0, distributed: bool = True):
        self._dataset_name = dataset_name
        self._score_threshold = float(score_threshold)
        self._distributed = distributed
        self._gt: dict | None = None
        self._results: list[tuple] = []

    def reset(self) -> None:
        self._results = []

    def _ground_truth(self) -> dict:
        """image_id -> (gt RLEs, gt classes), built once from the dataset dicts."""
        if self._gt is None:
            self._gt = dataset_ground_truth(self._dataset_name)
        return self._gt

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        gt = self._ground_truth()
        for inp, out in zip(inputs, outputs):
            if inp["image_id"] not in gt:
                raise KeyError(f"{self._dataset_name}: image_id {inp['image_id']} has no record")
            gt_rles, gt_classes = gt[inp["image_id"]]
            inst = out["instances"].to("cpu")
            keep = inst.scores.numpy() >= self._score_threshold
            scores = inst.scores.numpy()[keep]
            classes = inst.pred_classes.numpy()[keep]
            masks = inst.pred_masks.numpy()[keep] if len(scores) else np.zeros((0, 1, 1), bool)
            boxes = inst.pred_boxes.tensor.numpy()[keep] if inst.has("pred_boxes") else None
            pred_rles = encode_masks(masks) if len(scores) else []
            ious = rle_iou(pred_rles, gt_rles)
            ap = image_ap50(ious, scores, classes, gt_classes)
            strict = image_ap50_strict(ious, pred_rles, scores, classes, gt_classes, boxes)
            self._results.append((inp["image_id"], ap, strict, len(scores)))

    def evaluate(self) -> OrderedDict:
        results = self._results
        if self._distributed:
            comm.synchronize()
            results = list(itertools.chain(*comm.gather(results, dst=0)))
            if not comm.is_main_process():
                return OrderedDict()
        by_image = {r[0]: r[1:] for r in results}  # de-duplicate padding
        aps = [ap for ap, _, _ in by_image.values()]
        empty = [n for ap, _, n in by_image.values() if ap is None]
        if not by_image:
            logger.warning("%s: no images were evaluated", self._dataset_name)
        metrics = {
            "mAP50": mean_image_ap(aps),
            "mAP50_strict": mean_image_ap([strict for _, strict, _ in by_image.values()]),
            "images": float(len(aps) - len(empty)),
            "empty_images": float(len(empty)),
            "empty_images_with_fp": float(sum(1 for n in empty if n > 0)),
        }
        logger.info(
            "%s: pixellib mAP@%.2f = %.4f (strict, one detection per head: %.4f) over %d images "
            "with heads (%d without heads, %d of them with false detections)",
            self._dataset_name,
            IOU_THRESHOLD,
            metrics["mAP50"],
            metrics["mAP50_strict"],
            metrics["images"],
            metrics["empty_images"],
            metrics["empty_images_with_fp"],
        )
        return OrderedDict(pixellib=metrics)
