"""Inference: ``SpermPredictor`` -> ``ImagePrediction`` (plain numpy), morphometrics, overlays,
video streaming, labelme export and the ``tools/infer.py`` job (``run_inference``)."""

from sperm_d2.inference.grader import HeadGrader
from sperm_d2.inference.job import InferOptions, run_inference
from sperm_d2.inference.morphometrics import HeadMorphometrics, measure_mask, measure_masks
from sperm_d2.inference.predictor import SpermPredictor, add_model_arguments
from sperm_d2.inference.run_folder import find_run_weights
from sperm_d2.inference.types import ImagePrediction, empty_prediction, from_instances

__all__ = [
    "HeadGrader",
    "HeadMorphometrics",
    "ImagePrediction",
    "InferOptions",
    "SpermPredictor",
    "add_model_arguments",
    "empty_prediction",
    "find_run_weights",
    "from_instances",
    "measure_mask",
    "measure_masks",
    "run_inference",
]
