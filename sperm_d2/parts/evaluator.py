"""``PartEvaluator``: semantic IoU of the part segmenter per part class over a split.

IoU is over every pixel of the split together (a confusion matrix summed over fields), as
CP-Net's part mIoU is: ``parts/IoU-<part>`` per class, ``parts/mIoU`` their mean over the part
classes (background left out; over the head parts only for a head-part segmenter, whose crops
hold no midpiece or tail), ``parts/IoU-head`` for the head (acrosome + nucleus + vacuole)
against everything else, and ``parts/pixel_accuracy``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Sequence

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from sperm_d2.parts.targets import HEAD_PARTS, head_part_codes

logger = logging.getLogger(__name__)


def scored_parts(cfg) -> tuple[str, ...] | None:
    """The parts a segmenter of ``cfg`` is scored on: the head parts for a head-part segmenter
    (its crops hold no midpiece or tail), all (``None``) for a field segmenter."""
    return HEAD_PARTS if cfg.SPERM.PARTS.INPUT == "head" else None


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 pixel counts, rows the true class, columns the predicted one."""
    idx = gt.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """IoU per class (NaN for a class neither present nor predicted)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def part_metrics(
    conf: np.ndarray, class_names: Sequence[str], scored: Sequence[str] | None = None
) -> dict[str, float]:
    """``mIoU``, ``IoU-<part>``, ``IoU-head`` and ``pixel_accuracy`` (in %) of a confusion
    matrix over background + ``class_names``; ``mIoU`` and ``IoU-<part>`` over the ``scored``
    parts only (default: all)."""
    iou = iou_from_confusion(conf)
    keep = [i for i, name in enumerate(class_names) if scored is None or name in scored]
    out = {f"IoU-{class_names[i]}": 100 * float(iou[i + 1]) for i in keep}
    parts = iou[1:][keep]
    parts = parts[np.isfinite(parts)]
    out["mIoU"] = 100 * float(parts.mean()) if len(parts) else float("nan")
    head = head_part_codes(class_names)
    if head:
        is_head = np.zeros(len(conf), bool)
        is_head[head] = True
        tp = conf[np.ix_(is_head, is_head)].sum()
        union = conf[is_head].sum() + conf[:, is_head].sum() - tp
        out["IoU-head"] = 100 * float(tp / union) if union else float("nan")
    total = conf.sum()
    out["pixel_accuracy"] = 100 * float(np.trace(conf) / total) if total else float("nan")
    return out


class PartEvaluator(DatasetEvaluator):
    """Sums the confusion matrix of arg-max predictions against the label maps; metrics on every
    process's sums together (key family ``parts``)."""

    def __init__(
        self,
        dataset_name: str,
        class_names: Sequence[str],
        distributed: bool = True,
        scored: Sequence[str] | None = None,
    ):
        self._name = dataset_name
        self._classes = list(class_names)
        self._scored = [c for c in self._classes if scored is None or c in scored]
        self._k = len(self._classes) + 1
        self._distributed = distributed
        self.reset()

    def reset(self) -> None:
        self._conf = np.zeros((self._k, self._k), np.int64)
        self._fields = 0

    def process(self, inputs: dict, outputs: dict) -> None:
        pred = outputs["probs"].argmax(1).cpu().numpy()
        self._conf += confusion(inputs["targets"].cpu().numpy(), pred, self._k)
        self._fields += len(pred)

    def evaluate(self) -> OrderedDict:
        conf, fields = self._conf, self._fields
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather((conf, fields), dst=0)
            if not comm.is_main_process():
                return OrderedDict()
            conf = sum(c for c, _ in gathered)
            fields = sum(n for _, n in gathered)
        if not fields:
            logger.warning("%s: no fields to evaluate parts on", self._name)
            return OrderedDict()
        metrics = part_metrics(conf, self._classes, self._scored)
        logger.info(
            "%s: parts mIoU %.2f, head IoU %.2f over %d images (%s)",
            self._name,
            metrics["mIoU"],
            metrics.get("IoU-head", float("nan")),
            fields,
            ", ".join(f"{n} {metrics[f'IoU-{n}']:.1f}" for n in self._scored),
        )
        return OrderedDict(parts=metrics)
