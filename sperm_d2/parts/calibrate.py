"""Per-class logit biases for the part segmenter, chosen on val (``SPERM.PARTS.LOGIT_BIAS``).

The segmenter's arg-max is not the decision that gives the best IoU: its loss weights the thin
parts up (``SPERM.PARTS.CLASS_WEIGHTS``) and its training windows are centred on parts, so it
calls too many background pixels tail or midpiece; and IoU, unlike pixel accuracy, wants a
different decision threshold per class. Adding a bias ``b_k`` to class ``k``'s logit before the
arg-max moves class ``k``'s threshold. :func:`choose_logit_bias` picks the biases on a sample of
a val split's pixels by coordinate ascent over :data:`GRID` (background fixed at 0), maximising
the mean IoU of the scored parts, as the part evaluator computes it. Pure numpy; the run-level
step (model, val split, writing the run's config) is :mod:`sperm_d2.engine.part_calibration`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from sperm_d2.parts.evaluator import confusion, part_metrics

#: the bias values tried per class, smallest magnitude first (a tie keeps the smaller bias)
GRID = tuple(sorted(np.round(np.arange(-4.0, 4.001, 0.25), 2).tolist(), key=abs))
#: most pixels sampled per image (a regular grid): a 1280 x 1024 field gives about 146,000
PIXELS_PER_IMAGE = 250_000


def sample_stride(height: int, width: int, budget: int = PIXELS_PER_IMAGE) -> int:
    """The grid step that keeps at most ``budget`` pixels of a ``height`` x ``width`` image."""
    return max(1, math.ceil(math.sqrt(height * width / max(1, budget))))


def mean_iou(
    logits: np.ndarray,
    targets: np.ndarray,
    bias: np.ndarray,
    class_names: Sequence[str],
    scored: Sequence[str] | None = None,
) -> float:
    """Mean IoU (%) of the ``scored`` parts (default all) of ``argmax(logits + bias)`` against
    ``targets``: ``logits`` (P, K + 1) for P pixels, background first; ``targets`` (P,)."""
    pred = (logits + bias.astype(logits.dtype)).argmax(1)
    conf = confusion(targets, pred, logits.shape[1])
    return part_metrics(conf, class_names, scored)["mIoU"]


def choose_logit_bias(
    logits: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
    scored: Sequence[str] | None = None,
    grid: Sequence[float] = GRID,
    rounds: int = 3,
) -> tuple[np.ndarray, float, float]:
    """(bias (K + 1,), mean IoU before, mean IoU after): coordinate ascent over ``grid`` for
    each scored class in turn, ``rounds`` passes at most (fewer when a pass changes nothing);
    background and unscored classes keep 0. A pixel sample of a val split in, never test."""
    names = list(class_names)
    keep = [i + 1 for i, n in enumerate(names) if scored is None or n in scored]
    bias = np.zeros(logits.shape[1], np.float32)
    before = best = mean_iou(logits, targets, bias, names, scored)
    if not math.isfinite(before):  # nothing scored is present or predicted: nothing to tune
        return bias, before, before
    for _ in range(rounds):
        changed = False
        for k in keep:
            for value in grid:
                trial = bias.copy()
                trial[k] = value
                score = mean_iou(logits, targets, trial, names, scored)
                if score > best + 1e-9:
                    best, bias, changed = score, trial, True
        if not changed:
            break
    return bias, before, best
