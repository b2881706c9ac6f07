"""Evaluation: COCO AP (bbox + segm, per class), the study's per-image ``pixellib/mAP50`` and
image-level grading of class folders.

The names below are loaded on first use (PEP 562), so importing a numpy-only module such as
``sperm_d2.evaluation.classification`` does not import detectron2 through this package.
"""

from __future__ import annotations

from sperm_d2.lazy import lazy_exports

#: module -> the public names it defines
_EXPORTS = {
    "sperm_d2.evaluation.evaluators": ("build_evaluator",),
    "sperm_d2.evaluation.pixellib_evaluator": ("PixellibEvaluator",),
    "sperm_d2.evaluation.pixellib_ap": (
        "average_precision",
        "image_ap50",
        "mask_iou",
        "mean_image_ap",
    ),
    # image-level grading on class folders
    "sperm_d2.evaluation.classification": (
        "GradedImage",
        "choose_bias",
        "choose_threshold",
        "confusion_matrix",
        "grade_metrics",
        "metrics_from_confusion",
    ),
}

__all__ = [name for names in _EXPORTS.values() for name in names]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
