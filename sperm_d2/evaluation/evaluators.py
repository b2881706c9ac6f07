"""The evaluator the trainer and ``evaluate.py`` run on a registered split: COCO AP (bbox + segm,
per class) and the study's per-image ``pixellib/mAP50``. Kept out of ``evaluation/__init__.py`` so
the numpy-only modules of the package (``classification``, ``pixellib_ap``) load without
detectron2."""

from __future__ import annotations

import itertools
import os

from detectron2.config import CfgNode
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.utils import comm

from sperm_d2.evaluation.heads_evaluator import HeadsEvaluator
from sperm_d2.evaluation.pixellib_evaluator import PixellibEvaluator


class ShownImagesCOCOEvaluator(COCOEvaluator):
    """A ``COCOEvaluator`` that scores only the images it was shown (``process``), not every
    image of the dataset: an image left out of the pass (an unreadable file that ``evaluate.py``
    skipped and listed) takes its ground truth with it, instead of counting its heads as missed.
    The PixelLib and heads evaluators score only the images shown too, so every metric covers
    the same images."""

    def evaluate(self, img_ids=None):
        if img_ids is None:
            shown = [p["image_id"] for p in self._predictions]
            if self._distributed:  # every process takes part in the gather
                shown = list(itertools.chain(*comm.gather(shown, dst=0)))
            img_ids = sorted(set(shown))
        return super().evaluate(img_ids=img_ids)


def build_evaluator(
    cfg: CfgNode,
    dataset_name: str,
    output_dir: str | os.PathLike | None = None,
    *,
    shown_images_only: bool = False,
) -> DatasetEvaluators:
    """COCOEvaluator (bbox, plus segm when ``MODEL.MASK_ON``; per-class AP), PixellibEvaluator
    and HeadsEvaluator.

    Results are a flat dict of ``bbox/AP``, ``segm/AP50``, ``segm/AP-good``, ... (x100),
    ``pixellib/mAP50`` (0-1) and ``heads/recall50``, ``heads/median_iou``, ... (0-1, at
    ``SPERM.CONFIDENCE_THRESHOLD``). COCO predictions are written to ``output_dir`` when given.
    ``shown_images_only``: COCO AP over the images processed, not the whole dataset (for a pass
    that skips unreadable images; :class:`ShownImagesCOCOEvaluator`).
    """
    tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
    coco_evaluator = ShownImagesCOCOEvaluator if shown_images_only else COCOEvaluator
    evaluators = [
        coco_evaluator(
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
