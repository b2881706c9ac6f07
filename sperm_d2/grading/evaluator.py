"""``GraderEvaluator``: head-level grading metrics of the grader on a split's annotated heads.

One pass gives everything: accuracy, balanced accuracy (the model-selection metric: the mean
per-class recall, which "call everything bad" cannot game on HuSHeM, 75 % bad), recall per
class, and the validation loss (mean negative log-likelihood, computed in evaluation mode, so
BatchNorm statistics never see validation data). Keys ``grader/...`` in the trainer's storage.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

logger = logging.getLogger(__name__)


def grading_metrics(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, balanced accuracy, per-class recall and NLL of ``probs`` (N, K) at arg-max."""
    k = len(class_names)
    if len(labels) == 0:
        return {}
    pred = probs.argmax(1)
    recalls = {}
    for i, name in enumerate(class_names):
        n = int((labels == i).sum())
        recalls[f"recall_{name}"] = float((pred[labels == i] == i).mean()) if n else float("nan")
    present = [v for v in recalls.values() if np.isfinite(v)]
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)).mean()
    return {
        "accuracy": float((pred == labels).mean()),
        "balanced_accuracy": float(np.mean(present)) if present else float("nan"),
        **recalls,
        "loss": float(nll),
        "heads": float(len(labels)),
        "classes": float(k),
    }


class GraderEvaluator(DatasetEvaluator):
    """Collects the grader's probabilities and the true classes; metrics on every process's
    results together."""

    def __init__(self, dataset_name: str, class_names: list[str], distributed: bool = True):
        self._name = dataset_name
        self._classes = list(class_names)
        self._distributed = distributed
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def reset(self) -> None:
        self._probs, self._labels = [], []

    def process(self, inputs: dict, outputs: dict) -> None:
        self._probs.append(outputs["probs"].detach().cpu().numpy())
        self._labels.append(inputs["labels"].cpu().numpy())

    def evaluate(self) -> OrderedDict:
        parts = [(self._probs, self._labels)]
        if self._distributed:
            comm.synchronize()
            parts = comm.gather(parts[0], dst=0)
            if not comm.is_main_process():
                return OrderedDict()
        probs = list(itertools.chain(*(p for p, _ in parts)))
        labels = list(itertools.chain(*(lab for _, lab in parts)))
        k = len(self._classes)
        probs_a = np.concatenate(probs) if probs else np.zeros((0, k))
        labels_a = np.concatenate(labels) if labels else np.zeros((0,), np.int64)
        metrics = grading_metrics(probs_a, labels_a, self._classes)
        if not metrics:
            logger.warning("%s: no annotated heads to grade", self._name)
            return OrderedDict()
        logger.info(
            "%s: grader accuracy %.4f, balanced accuracy %.4f, loss %.4f over %d heads",
            self._name,
            metrics["accuracy"],
            metrics["balanced_accuracy"],
            metrics["loss"],
            len(labels_a),
        )
        return OrderedDict(grader=metrics)
