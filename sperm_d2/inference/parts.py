"""Parts for a prediction's heads (a :class:`~sperm_d2.parts.parser.PartParser` run on the
image) and each head's parts as masks again, for the WHO criteria and the labelme export."""

from __future__ import annotations

import dataclasses

import numpy as np

from sperm_d2.inference.types import ImagePrediction
from sperm_d2.parts.parser import PartParser


def with_parts(parser: PartParser, image: np.ndarray, pred: ImagePrediction) -> ImagePrediction:
    """``pred`` (one detection per head) with ``part_labels`` from ``parser`` on ``image``."""
    pred = pred.one_per_head()
    labels = parser.part_labels(image, pred.masks)
    return dataclasses.replace(pred, part_labels=labels, part_names=parser.class_names)


def head_parts(pred: ImagePrediction, i: int) -> dict[str, np.ndarray]:
    """Part name -> (H, W) bool mask of head ``i`` (empty dict without parts)."""
    if pred.part_labels is None:
        return {}
    labels = pred.part_labels[i]
    return {name: labels == k + 1 for k, name in enumerate(pred.part_names)}
