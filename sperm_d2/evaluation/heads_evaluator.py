"""``HeadsEvaluator``: detectron2 evaluator of head-level finding and outline precision on full
fields (``heads/recall50``, ``heads/median_iou``, ``heads/border_accuracy``, ...; see
:mod:`head_match`), at the score cutoff ``infer.py`` uses."""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from sperm_d2.evaluation.head_match import HeadMatchTally
from sperm_d2.evaluation.pixellib_evaluator import dataset_ground_truth
from sperm_d2.masks import cut_by_border, encode_masks, rle_cut_by_border, rle_iou

logger = logging.getLogger(__name__)


class HeadsEvaluator(DatasetEvaluator):
    """Annotated heads found (mask IoU >= 0.5, one-to-one), their outlines' IoU and border flags.

    Args:
        dataset_name: a registered dataset with instance annotations.
        score_threshold: detections below it are left out (``SPERM.CONFIDENCE_THRESHOLD``: what
            a user of ``infer.py`` gets).
        distributed: gather per-image tallies from every process.
    """

    def __init__(self, dataset_name: str, score_threshold: float = 0.5, distributed: bool = True):
        self._dataset_name = dataset_name
        self._score_threshold = float(score_threshold)
        self._distributed = distributed
        self._gt: dict | None = None
        self._tally = HeadMatchTally()
        self._seen: set = set()

    def reset(self) -> None:
        self._tally = HeadMatchTally()
        self._seen = set()

    def _ground_truth(self) -> dict:
        """image_id -> (gt RLEs, gt border flags), built once."""
        if self._gt is None:
            self._gt = {
                image_id: (rles, rle_cut_by_border(rles))
                for image_id, (rles, _) in dataset_ground_truth(self._dataset_name).items()
            }
        return self._gt

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        gt = self._ground_truth()
        for inp, out in zip(inputs, outputs):
            if inp["image_id"] in self._seen:  # the last batch may repeat images (padding)
                continue
            self._seen.add(inp["image_id"])
            gt_rles, gt_border = gt[inp["image_id"]]
            inst = out["instances"].to("cpu")
            keep = inst.scores.numpy() >= self._score_threshold
            scores = inst.scores.numpy()[keep]
            masks = inst.pred_masks.numpy()[keep].astype(bool)
            pred_rles = encode_masks(masks) if len(scores) else []
            self._tally.add(rle_iou(pred_rles, gt_rles), scores, cut_by_border(masks), gt_border)

    def evaluate(self) -> OrderedDict:
        tally = self._tally
        if self._distributed:
            comm.synchronize()
            tallies = comm.gather(tally, dst=0)
            if not comm.is_main_process():
                return OrderedDict()
            tally = tallies[0].merge(tallies[1:])
        metrics = tally.summary()
        logger.info(
            "%s: %d of %d annotated heads found at mask IoU 0.5 (score >= %.2f), median IoU "
            "%.3f, border flag right on %.1f %% of them",
            self._dataset_name,
            len(tally.matched_ious),
            tally.gt,
            self._score_threshold,
            metrics["median_iou"],
            100 * metrics["border_accuracy"] if np.isfinite(metrics["border_accuracy"]) else 0,
        )
        return OrderedDict(heads=metrics)
