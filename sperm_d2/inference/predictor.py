"""``SpermPredictor``: a trained run (or config + weights) turned into ``ImagePrediction`` objects.

Compared with detectron2's ``DefaultPredictor`` it resizes to the *training* config's test size
(small crops are not blown up to 800 px), can batch several images per forward pass (worth it on
GPU only: on CPU one image at a time measured faster), decodes images ahead in a background
thread, and returns the project's plain numpy dataclass instead of ``Instances``.
"""

import argparse
import logging
import os
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from sperm_d2.inference.background import prefetch
from sperm_d2.inference.grader import HeadGrader
from sperm_d2.inference.model_source import ModelSource, check_model_source
from sperm_d2.inference.runs import find_run_weights, run_config
from sperm_d2.inference.types import ImagePrediction, from_instances
from sperm_d2.precision import autocast, to_fp32, use_bf16

logger = logging.getLogger(__name__)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The CLIs' model source: ``--run`` or ``--config-file`` + ``--weights``, and ``--opts``
    (what :meth:`SpermPredictor.load` takes)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="training run folder (config.yaml + model_best/final.pth)")
    src.add_argument("--config-file", help="config YAML (with --weights)")
    parser.add_argument(
        "--weights", default=None, help="checkpoint (with --config-file) or name in --run"
    )
    parser.add_argument(
        "--grader",
        nargs="+",
        default=None,
        help="head-grader run folder(s): each head gets p_bad and its grade from it (several: "
        "an ensemble, probabilities averaged; default: the detector run's SPERM.GRADER.RUN, if "
        "set; 'none' grades with the detector's class)",
    )
    parser.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[], help="config KEY VALUE pairs (last)"
    )


class SpermPredictor:
    """Mask R-CNN inference on BGR ``uint8`` images, returning :class:`ImagePrediction`.

    Args:
        cfg: the run's config (``setup_cfg``); its ``INPUT.MIN/MAX_SIZE_TEST`` set the test size.
        weights: checkpoint path; ``None`` uses ``cfg.MODEL.WEIGHTS`` ("" keeps random weights).
        score_threshold: drop heads below this score inside the model (fewer masks to paste);
            ``None`` keeps the config's ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``.
        batch_size: images per forward pass; ``None`` uses ``SPERM.INFER_BATCH_SIZE`` (0 = auto).
        grader: a :class:`HeadGrader` that grades every head (``p_bad``, grade); ``None`` keeps
            the detector's own class.
    """

    def __init__(
        self,
        cfg: CfgNode,
        weights: str | os.PathLike | None = None,
        score_threshold: float | None = None,
        batch_size: int | None = None,
        grader: HeadGrader | None = None,
    ) -> None:
        cfg = cfg.clone()
        cfg.defrost()
        if not torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu":
            cfg.MODEL.DEVICE = "cpu"
        if score_threshold is not None:
            cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_threshold)
        cfg.freeze()
        self.cfg = cfg
        self.class_names = tuple(cfg.SPERM.CLASSES)
        self.model = build_model(cfg).eval()
        self.weights = str(cfg.MODEL.WEIGHTS if weights is None else weights)
        if self.weights:
            DetectionCheckpointer(self.model).load(self.weights)
        else:
            logger.warning("no weights given: the model keeps its random initialisation")
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        auto = 1 if cfg.MODEL.DEVICE == "cpu" else 4
        size = cfg.SPERM.INFER_BATCH_SIZE if batch_size is None else batch_size
        self.batch_size = max(1, int(size) or auto)
        # SPERM.INFER_PRECISION: CPU bf16 autocast or fp32 (outputs are fp32 either way)
        self.bf16 = use_bf16(cfg.SPERM.INFER_PRECISION, cfg.MODEL.DEVICE)
        self.grader = grader
        if grader is not None:
            grader.check_classes(self.class_names)

    @classmethod
    def from_run(
        cls, run_dir: str | os.PathLike, checkpoint: str = "", opts: Sequence[str] = (), **kwargs
    ) -> "SpermPredictor":
        """Load a training run folder (``config.yaml`` + ``model_best.pth``/``model_final.pth``)."""
        cfg = run_config(run_dir, opts)
        return cls(cfg, weights=find_run_weights(run_dir, checkpoint), **kwargs)

    @classmethod
    def load(
        cls,
        run: str | os.PathLike | None = None,
        *,
        config_file: str | None = None,
        weights: str | None = None,
        opts: Sequence[str] = (),
        confidence_threshold: float | None = None,
        grader: str | Sequence[str] | None = None,
        **kwargs,
    ) -> "SpermPredictor":
        """What the CLIs call: a run folder (``weights`` = checkpoint name in it) or a config file
        (``weights`` = checkpoint path). ``confidence_threshold=None`` uses the config's
        ``SPERM.CONFIDENCE_THRESHOLD``. ``grader``: head-grader run folder(s); ``None`` uses the
        detector config's ``SPERM.GRADER.RUN`` when set, "none" uses no grader. Everything is
        checked before a model is built (:func:`check_model_source`: one ``ValueError`` line)."""
        src = check_model_source(run, config_file, weights, opts, grader)
        return cls.from_source(src, confidence_threshold, **kwargs)

    @classmethod
    def from_source(
        cls, src: ModelSource, confidence_threshold: float | None = None, **kwargs
    ) -> "SpermPredictor":
        """Build the models of a checked :class:`ModelSource` (see :meth:`load`)."""
        if confidence_threshold is None:
            confidence_threshold = src.cfg.SPERM.CONFIDENCE_THRESHOLD
        kwargs["score_threshold"] = confidence_threshold
        if src.graders:
            (gcfg, gweights), members = src.graders[0], src.graders[1:]
            kwargs["grader"] = HeadGrader(
                gcfg,
                gweights,
                src.grader_source,
                members=members,
                precision=src.cfg.SPERM.INFER_PRECISION,  # one precision for the whole run
            )
        return cls(src.cfg, weights=src.weights, **kwargs)

    def _model_input(self, image: np.ndarray) -> dict:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        if self.cfg.INPUT.FORMAT == "RGB":
            image = image[:, :, ::-1]
        h, w = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(
            np.ascontiguousarray(resized.transpose(2, 0, 1)), dtype=torch.float32
        )
        return {"image": tensor, "height": h, "width": w}

    def predict_instances(self, images: Sequence[np.ndarray]) -> list:
        """Run the model on images (one forward pass) and return detectron2 ``Instances``."""
        with torch.inference_mode(), autocast(self.bf16):
            outputs = self.model([self._model_input(im) for im in images])
        return [to_fp32(o["instances"].to("cpu")) for o in outputs]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        sources: Sequence[str] | None = None,
        frames: Sequence[int | None] | None = None,
    ) -> list[ImagePrediction]:
        """Predict several images in one forward pass (then grade their heads, with a grader)."""
        sources = sources if sources is not None else [""] * len(images)
        frames = frames if frames is not None else [None] * len(images)
        preds = [
            from_instances(inst, src, self.class_names, frame)
            for inst, src, frame in zip(self.predict_instances(images), sources, frames)
        ]
        if self.grader is not None:
            preds = [self.grader.grade(im, p) for im, p in zip(images, preds)]
        return preds

    def __call__(
        self, image: np.ndarray, source: str = "", frame: int | None = None
    ) -> ImagePrediction:
        """Predict one BGR image."""
        return self.predict_batch([image], [source], [frame])[0]

    def predict_stream(
        self, items: Iterable[tuple[str, int | None, np.ndarray]]
    ) -> Iterator[tuple[np.ndarray, ImagePrediction]]:
        """Predict ``(source, frame, image)`` items lazily, ``batch_size`` at a time; yields
        ``(image, prediction)`` in input order. Memory holds one batch, whatever the stream length.
        """
        batch: list[tuple[str, int | None, np.ndarray]] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield from self._flush(batch)
                batch = []
        if batch:
            yield from self._flush(batch)

    def _flush(self, batch):
        preds = self.predict_batch(
            [b[2] for b in batch], [b[0] for b in batch], [b[1] for b in batch]
        )
        for (_, _, image), pred in zip(batch, preds):
            yield image, pred

    def predict_paths(
        self, paths: Iterable[str | os.PathLike], decode_ahead: int = 4
    ) -> Iterator[tuple[str, ImagePrediction | None, str | None]]:
        """Decode image files in a background thread and predict them.

        Yields ``(path, prediction, None)``, or ``(path, None, reason)`` for a file that cannot be
        decoded (it is skipped; the caller decides how to report it).
        """
        from sperm_d2.inference.sources import read_image

        for path, (image, error) in prefetch(paths, read_image, decode_ahead):
            if image is None:
                yield str(path), None, error
            else:
                yield str(path), self(image, str(path)), None
