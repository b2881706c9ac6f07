"""Head-level detection numbers for full fields: how many annotated heads are found, how precise
their outlines are, and whether the "cut by the border" flag is right.

Pure numpy on an IoU matrix (no torch, no detectron2), used by :mod:`heads_evaluator`:

* each image's predictions are matched one-to-one to its annotated heads, greedily in descending
  score order, a pair counting when its mask IoU is at least ``iou_threshold`` (0.5, as COCO's
  AP50 and the study's per-image mAP50 match);
* ``recall50`` = matched annotated heads / annotated heads; ``precision50`` = matched
  predictions / predictions (at the score cutoff users run with);
* ``median_iou`` = median mask IoU over the matched pairs (outline precision, apart from finding);
* ``border_accuracy`` = share of matched pairs whose border flags agree
  (:func:`sperm_d2.masks.cut_by_border` on both masks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

IOU_THRESHOLD = 0.5


def match_greedy(
    ious: np.ndarray, scores: np.ndarray, iou_threshold: float = IOU_THRESHOLD
) -> list[tuple[int, int]]:
    """``(prediction, ground truth)`` index pairs: in descending score order each prediction takes
    the unmatched annotated head it overlaps most, if that IoU is at least ``iou_threshold``."""
    ious = np.asarray(ious, np.float64)
    if ious.size == 0:  # no predictions or no annotated heads
        return []
    taken = np.zeros(ious.shape[1], bool)
    pairs = []
    for p in np.argsort(-np.asarray(scores), kind="stable"):
        row = np.where(taken, -1.0, ious[p])
        g = int(np.argmax(row))
        if row[g] >= iou_threshold:
            taken[g] = True
            pairs.append((int(p), g))
    return pairs


@dataclass
class HeadMatchTally:
    """Counts over images, filled by :meth:`add` and summarised by :meth:`summary`."""

    gt: int = 0
    predictions: int = 0
    matched_ious: list[float] = field(default_factory=list)
    border_agree: int = 0
    gt_border: int = 0
    pred_border: int = 0

    def add(
        self,
        ious: np.ndarray,
        scores: np.ndarray,
        pred_border: np.ndarray,
        gt_border: np.ndarray,
        iou_threshold: float = IOU_THRESHOLD,
    ) -> None:
        """One image: ``ious [P, G]``, prediction ``scores [P]``, border flags of both."""
        pairs = match_greedy(ious, scores, iou_threshold)
        self.gt += len(gt_border)
        self.predictions += len(scores)
        self.gt_border += int(np.sum(gt_border))
        self.pred_border += int(np.sum(pred_border))
        for p, g in pairs:
            self.matched_ious.append(float(ious[p, g]))
            self.border_agree += int(bool(pred_border[p]) == bool(gt_border[g]))

    def merge(self, others: Iterable["HeadMatchTally"]) -> "HeadMatchTally":
        """The sum of this tally and ``others`` (results gathered from several processes)."""
        total = HeadMatchTally()
        for t in (self, *others):
            total.gt += t.gt
            total.predictions += t.predictions
            total.matched_ious += t.matched_ious
            total.border_agree += t.border_agree
            total.gt_border += t.gt_border
            total.pred_border += t.pred_border
        return total

    def summary(self) -> dict[str, float]:
        """``recall50``, ``precision50``, ``median_iou``, ``border_accuracy`` (NaN where there is
        nothing to divide by) and the counts behind them."""
        matched = len(self.matched_ious)
        nan = float("nan")
        return {
            "recall50": matched / self.gt if self.gt else nan,
            "precision50": matched / self.predictions if self.predictions else nan,
            "median_iou": float(np.median(self.matched_ious)) if matched else nan,
            "mean_iou": float(np.mean(self.matched_ious)) if matched else nan,
            "border_accuracy": self.border_agree / matched if matched else nan,
            "gt_heads": float(self.gt),
            "gt_at_border": float(self.gt_border),
            "predicted_heads": float(self.predictions),
            "predicted_at_border": float(self.pred_border),
        }
