"""``HeadGrader``: a trained head-grader run (or an ensemble of them) applied to the heads a
detector found.

Each head of an :class:`ImagePrediction` is cut into its canonical crop (the same function that
cut the training samples, ``sperm_d2.grading.crop``), once per view the graders need (an
ensemble's members may see different crops: ``SPERM.GRADER.VIEW``, crop size, ...); the crops
of all heads of a detector batch (several images) go through the grader together. The grade
replaces ``classes``, ``p_bad`` is set, and the detector's own class is kept in
``detector_classes``. Before grading, the detector's duplicate detections of one head (one per
class) are reduced to one (:meth:`ImagePrediction.one_per_head`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from sperm_d2.errors import InputError
from sperm_d2.grading import GRADER_ARCHS, grades_detector, is_grader
from sperm_d2.grading.crop import canonical_crop, input_channels, model_input
from sperm_d2.grading.samples import crop_settings
from sperm_d2.inference.run_folder import find_run_weights, run_config
from sperm_d2.inference.types import ImagePrediction
from sperm_d2.model_weights import load_model_weights
from sperm_d2.precision import autocast, use_bf16

logger = logging.getLogger(__name__)


class HeadGrader:
    """Grade heads with a ``SpermHeadGrader`` model (``cfg`` its run's config), or with an
    ensemble: ``members`` adds more ``(cfg, weights)`` models (e.g. the K-fold graders, seeds, or
    graders of another view) whose class probabilities are averaged. Each member sees the crops
    its own config cuts (each distinct crop cut once per head). ``precision``:
    ``SPERM.INFER_PRECISION`` to run at (the detector's, in a predictor); ``None`` = ``cfg``'s."""

    def __init__(
        self,
        cfg: CfgNode,
        weights: str | os.PathLike,
        source: str = "",
        members: Sequence[tuple[CfgNode, str | os.PathLike]] = (),
        precision: str | None = None,
    ) -> None:
        self.source = str(source or weights)
        self.cfg = _inference_cfg(cfg, self.source)
        precision = self.cfg.SPERM.INFER_PRECISION if precision is None else precision
        self.bf16 = use_bf16(precision, self.cfg.MODEL.DEVICE)
        self.class_names = tuple(self.cfg.SPERM.CLASSES)
        if "bad" not in self.class_names:
            raise InputError(f"{self.source}: the grader's classes {self.class_names} lack 'bad'")
        self.bad_index = self.class_names.index("bad")
        self.settings = crop_settings(self.cfg)  # the first grader's (crops())
        self.batch_size = max(1, int(self.cfg.SPERM.GRADER.TEST_BATCH_SIZE))
        self.weights = str(weights)
        self.models = [self._load(self.cfg, weights)]
        #: (crop settings, indices into models of the graders that see those crops)
        self.views: list[tuple[dict, list[int]]] = [(self.settings, [0])]
        for member_cfg, member_weights in members:
            member_cfg = _inference_cfg(member_cfg, str(member_weights))
            if tuple(member_cfg.SPERM.CLASSES) != self.class_names:
                raise InputError(f"{member_weights}: classes differ from {self.class_names}")
            self.models.append(self._load(member_cfg, member_weights))
            settings = crop_settings(member_cfg)
            view = next((v for v in self.views if v[0] == settings), None)
            if view is None:
                self.views.append((settings, [len(self.models) - 1]))
            else:
                view[1].append(len(self.models) - 1)

    @staticmethod
    def _load(cfg: CfgNode, weights: str | os.PathLike):
        model = build_model(cfg).eval()
        load_model_weights(model, weights)  # as data: no pickled code runs
        # channels-last convolutions measured 26 % faster on the CPU (12 vs 16 ms for 3 heads
        # with flip TTA, 2 cores), the same numbers
        return model.to(memory_format=torch.channels_last)

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike | Sequence[str | os.PathLike],
        checkpoint: str = "",
        opts: Sequence[str] = (),
    ) -> "HeadGrader":
        """Load a grader's training run folder (``config.yaml`` + ``model_best.pth``), or
        several (an ensemble)."""
        runs = [run_dir] if isinstance(run_dir, (str, os.PathLike)) else list(run_dir)
        loaded = [(run_config(r, opts), find_run_weights(r, checkpoint)) for r in runs]
        (cfg, weights), members = loaded[0], loaded[1:]
        return cls(cfg, weights, source=", ".join(map(str, runs)), members=members)

    def crops(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(N, C, S, S) uint8 model inputs (the first grader's crops) of the heads ``masks``
        (N, H, W) of a BGR image, laid out channels-last in memory (a view of the stacked crops,
        as the model wants them)."""
        return self._stacked(image, masks, self.settings).transpose(0, 3, 1, 2)

    @staticmethod
    def _stacked(image: np.ndarray, masks: np.ndarray, s: dict) -> np.ndarray:
        """(N, S, S, C) uint8 crops of crop settings ``s`` (with the mask channel or
        suppression)."""
        if s["format"] == "RGB":
            image = image[:, :, ::-1]
        inputs = [model_input(canonical_crop(image, m, **s["crop"]), s["mask_mode"]) for m in masks]
        if not inputs:
            size = s["crop"]["size"]
            return np.zeros((0, size, size, input_channels(s["mask_mode"])), np.uint8)
        return np.stack(inputs)

    def probabilities(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(N, K) class probabilities of the heads ``masks`` of a BGR ``image``."""
        return self._heads_probabilities([image], [masks])

    def _heads_probabilities(
        self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]
    ) -> np.ndarray:
        """(N, K) class probabilities of all heads ``masks[i]`` of ``images[i]``, in order: each
        view's crops cut once, its graders run on them, every grader's probabilities averaged."""
        total = 0.0
        for settings, members in self.views:
            stacked = [self._stacked(im, m, settings) for im, m in zip(images, masks)]
            # one channels-last (N, C, S, S) view of all heads, as in crops()
            crops = np.concatenate(stacked).transpose(0, 3, 1, 2)
            total = total + self._run(crops, [self.models[i] for i in members])
        return (total / len(self.models)).astype(np.float32)

    def _run(self, crops: np.ndarray, models: Sequence[torch.nn.Module]) -> np.ndarray:
        """(N, K) sum of ``models``' class probabilities of (N, C, S, S) channels-last crops: one
        forward per ``SPERM.GRADER.TEST_BATCH_SIZE`` crops."""
        crops = torch.from_numpy(crops)  # no copy: already channels-last
        out = []
        with torch.inference_mode(), autocast(self.bf16):
            for i in range(0, len(crops), self.batch_size):
                batch = {"images": crops[i : i + self.batch_size]}
                out.append(sum(m(batch)["probs"].float() for m in models).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def check_classes(self, class_names) -> None:
        """Raise InputError unless this grader can grade the heads of a detector with
        ``class_names`` (:func:`sperm_d2.grading.grades_detector`)."""
        if not grades_detector(self.class_names, class_names):
            raise InputError(
                f"{self.source}: grader classes {list(self.class_names)} differ from the "
                f"detector's SPERM.CLASSES {list(class_names)}"
            )

    def grade(self, image: np.ndarray, pred: ImagePrediction) -> ImagePrediction:
        """``pred`` with one detection per head, each graded: ``classes`` from the grader (its
        arg-max class), ``p_bad`` set, the detector's class kept in ``detector_classes``."""
        return self.grade_batch([image], [pred])[0]

    def grade_batch(
        self, images: Sequence[np.ndarray], preds: Sequence[ImagePrediction]
    ) -> list[ImagePrediction]:
        """:meth:`grade` for several images at once: the heads of all of them go through the
        grader together (one forward per ``SPERM.GRADER.TEST_BATCH_SIZE`` heads, not one per
        image: a detector batch of 8 images with 2-3 heads each is one grader call). The graded
        predictions carry the grader's class names; a one-class detector's class is not kept
        (``detector_classes`` None)."""
        if not preds:
            return []
        for pred in preds:
            self.check_classes(pred.class_names)
        preds = [pred.one_per_head() for pred in preds]
        probs = self._heads_probabilities(images, [pred.masks for pred in preds])
        ends = np.cumsum([len(pred) for pred in preds])[:-1]
        return [
            dataclasses.replace(
                pred,
                classes=p.argmax(1).astype(np.int64),
                p_bad=p[:, self.bad_index].astype(np.float32),
                class_names=self.class_names,
                detector_classes=(
                    pred.classes.copy() if pred.class_names == self.class_names else None
                ),
            )
            for pred, p in zip(preds, np.split(probs, ends))
        ]


def _inference_cfg(cfg: CfgNode, source: str) -> CfgNode:
    """A grader config checked and set up for inference (CPU without a GPU)."""
    if not is_grader(cfg):
        raise InputError(
            f"{source or 'grader config'}: MODEL.META_ARCHITECTURE is "
            f"{cfg.MODEL.META_ARCHITECTURE}, not a head grader ({'/'.join(GRADER_ARCHS)})"
        )
    cfg = cfg.clone()
    cfg.defrost()
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg
