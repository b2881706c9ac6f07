"""The evaluator the trainer and ``evaluate.py`` run on a registered split: COCO AP (bbox + segm,
per class) and the study's per-image ``pixellib/mAP50``. Kept out of ``evaluation/__init__.py`` so
the numpy-only modules of the package (``classification``, ``pixellib_ap``) load without
detectron2."""

from __future__ import annotations

import os

from detectron2.config import CfgNode
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators

from sperm_d2.evaluation.heads_evaluator import HeadsEvaluator
from sperm_d2.evaluation.pixellib_evaluator import PixellibEvaluator


def build_evaluator(
    cfg: CfgNode, dataset_name: str, output_dir: str | os.PathLike | None = None
) -> DatasetEvaluators:
    """COCOEvaluator (bbox, plus segm when ``MODEL.MASK_ON``; per-class AP), PixellibEvaluator
    and HeadsEvaluator.

    Results are a flat dict of ``bbox/AP``, ``segm/AP50``, ``segm/AP-good``, ... (x100),
    ``pixellib/mAP50`` (0-1) and ``heads/recall50``, ``heads/median_iou``, ... (0-1, at
    ``SPERM.CONFIDENCE_THRESHOLD``). COCO predictions are written to ``output_dir`` when given.
    """
    tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
    evaluators = [
        COCOEvaluator(
            dataset_name,
            tasks=tasks,
            distributed=True,
            output_dir=str(output_dir) if output_dir else None,
            max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
        )
    ]
    if cfg.MODEL.MASK_ON:
        evaluators.append(
            PixellibEvaluator(dataset_name, score_threshold=cfg.SPERM.PIXELLIB_SCORE_THRESH)
        )
        evaluators.append(
            HeadsEvaluator(dataset_name, score_threshold=cfg.SPERM.CONFIDENCE_THRESHOLD)
        )
    return DatasetEvaluators(evaluators)
