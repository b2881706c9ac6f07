"""The second stage: a head grader on canonical head crops, giving each head ``p_bad``.

``crop`` cuts the canonical crop (numpy + OpenCV, shared by training and inference), ``samples``
cuts and caches one crop per annotated head of a registered split, ``model`` is the CNN and
``ensemble`` several of them trained as one model (both registered in detectron2's
``META_ARCH_REGISTRY`` on import of this package), ``augment`` and
``loader`` feed it, ``evaluator`` scores it. The heads a detector found are graded at inference
by ``sperm_d2.inference.grader.HeadGrader``.
"""

from sperm_d2.grading.crop import CanonicalCrop, canonical_crop, model_input
from sperm_d2.grading.ensemble import SpermGraderEnsemble
from sperm_d2.grading.model import SpermHeadGrader

#: ``MODEL.META_ARCHITECTURE`` of the grader's configs: one grader, or an ensemble of them
GRADER_ARCHS = ("SpermHeadGrader", "SpermGraderEnsemble")


def is_grader(cfg) -> bool:
    """True for a grader config (as opposed to the Mask R-CNN detector's)."""
    return cfg.MODEL.META_ARCHITECTURE in GRADER_ARCHS


def grades_detector(grader_classes, detector_classes) -> bool:
    """Whether a grader with ``grader_classes`` can grade a detector's heads: the same classes,
    or a one-class detector (it finds heads and leaves grading to the grader: a full-field
    detector trained on heads without grades)."""
    return list(grader_classes) == list(detector_classes) or len(detector_classes) == 1


__all__ = [
    "GRADER_ARCHS",
    "CanonicalCrop",
    "SpermGraderEnsemble",
    "SpermHeadGrader",
    "canonical_crop",
    "grades_detector",
    "is_grader",
    "model_input",
]
