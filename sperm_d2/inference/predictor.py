"""``SpermPredictor``: a trained run (or config + weights) turned into ``ImagePrediction`` objects.

Compared with detectron2's ``DefaultPredictor`` it resizes to the *training* config's test size
(small crops are not blown up to 800 px), batches several images per forward pass, decodes
images ahead in a background thread, and returns the project's plain numpy dataclass instead of
``Instances``.

How many images per pass is measured, not assumed (``SPERM.INFER_BATCH_SIZE`` 0 = auto,
:mod:`sperm_d2.inference.batch_size`): a stream's first images are predicted in passes of 1, 2,
4 and 8, alternating and timed, and the fastest size is kept for the process. It differs by
setting: on 2 CPU cores 8 per pass was 2-22 % slower than 1 for R-101 at 256 px with random
weights, 4 per pass +38 % for the trained R-50 demo run at 192 px (``benchmarks/bench_infer.py``).
"""

import argparse
import collections
import hashlib
import itertools
import logging
import os
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from sperm_d2.cli import add_opts_argument
from sperm_d2.errors import InputError
from sperm_d2.inference.background import prefetch
from sperm_d2.inference.batch_size import BatchCalibration, calibration_for, stream_batches
from sperm_d2.inference.flip_tta import with_flip_tta
from sperm_d2.inference.grader import HeadGrader
from sperm_d2.inference.model_source import ModelSource, check_model_source
from sperm_d2.inference.parts import with_parts
from sperm_d2.inference.run_folder import find_run_weights, run_config
from sperm_d2.inference.tiling import Window, merge_windows, tile_windows
from sperm_d2.inference.types import ImagePrediction, from_instances
from sperm_d2.mask_score import use_mask_scoring
from sperm_d2.model_weights import load_model_weights
from sperm_d2.parts.parser import PartParser, part_runs
from sperm_d2.precision import autocast, to_fp32, use_bf16
from sperm_d2.roi_align import use_sperm_roi_align

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
    add_opts_argument(parser)


class SpermPredictor:
    """Mask R-CNN inference on BGR ``uint8`` images, returning :class:`ImagePrediction`.

    Args:
        cfg: the run's config (``setup_cfg``); its ``INPUT.MIN/MAX_SIZE_TEST`` set the test size.
        weights: checkpoint path; ``None`` uses ``cfg.MODEL.WEIGHTS`` ("" keeps random weights).
        score_threshold: drop heads below this score inside the model (fewer masks to paste);
            ``None`` keeps the config's ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``.
        batch_size: images per forward pass; ``None`` uses ``SPERM.INFER_BATCH_SIZE``; 0 = auto:
            measured on each stream's first images (see the module docstring);
            :attr:`calibration` then holds the latest stream's measurement and choice.
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
        parts: PartParser | None = None,
    ) -> None:
        cfg = cfg.clone()
        cfg.defrost()
        if not torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu":
            cfg.MODEL.DEVICE = "cpu"
        if score_threshold is not None:
            cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_threshold)
        cfg.freeze()
        self.cfg = cfg
        self.detector_class_names = tuple(cfg.SPERM.CLASSES)
        # the classes of the predictions: the grader's when it grades (a one-class detector
        # finds heads, the grader grades them)
        self.class_names = grader.class_names if grader is not None else self.detector_class_names
        self.class_colors = (grader.cfg if grader is not None else cfg).SPERM.CLASS_COLORS
        self.model = use_sperm_roi_align(build_model(cfg)).eval()
        use_mask_scoring(self.model, cfg.SPERM.MASK_SCORE_POWER)  # SPERM.MASK_SCORE_POWER
        self.weights = str(cfg.MODEL.WEIGHTS if weights is None else weights)
        if self.weights:
            load_model_weights(self.model, self.weights)  # as data: no pickled code runs
        else:
            logger.warning("no weights given: the model keeps its random initialisation")
        # SPERM.INFER_TTA: flipped views merged (the same weights; self.model stays the model)
        self.forward_model = with_flip_tta(self.model, cfg, cfg.SPERM.INFER_TTA)
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        # SPERM.TILE: images the resize would shrink more than a window are read in windows
        self.tile, self.tile_overlap = int(cfg.SPERM.TILE.SIZE), int(cfg.SPERM.TILE.OVERLAP)
        self.window_scale = self._resize_scale(self.tile, self.tile) if self.tile else 1.0
        size = cfg.SPERM.INFER_BATCH_SIZE if batch_size is None else batch_size
        if int(size) < 0:
            raise InputError(f"SPERM.INFER_BATCH_SIZE must be >= 0 (0 = auto), got {size}")
        self.batch_size = int(size)  # 0 = auto
        self.calibration: BatchCalibration | None = None
        # SPERM.INFER_PRECISION: CPU bf16 autocast or fp32 (outputs are fp32 either way)
        self.bf16 = use_bf16(cfg.SPERM.INFER_PRECISION, cfg.MODEL.DEVICE)
        self.grader = grader
        self.parts = parts  # a part segmenter: each head gets its parts (part_labels)
        if grader is not None:
            grader.check_classes(self.detector_class_names)

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
        # the part runs: --parts (parts_run, one run or a list), else SPERM.PARTS.RUN
        runs = part_runs(kwargs.pop("parts_run", None), src.cfg)
        if runs:
            kwargs["parts"] = PartParser.from_run(runs)
        return cls(src.cfg, weights=src.weights, **kwargs)

    def _resize_scale(self, h: int, w: int) -> float:
        """The test-size resize's scale for an ``h`` x ``w`` image."""
        short, longest = self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MAX_SIZE_TEST
        return T.ResizeShortestEdge.get_output_shape(h, w, short, longest)[0] / h

    def windows(self, h: int, w: int) -> list[Window] | None:
        """The windows an ``h`` x ``w`` image is predicted in (:mod:`tiling`), or ``None`` when
        it is read whole: ``SPERM.TILE.SIZE`` is 0, or the resize shrinks it no more than a
        window. With ``SPERM.TILE.SIZE`` every image is read at the window scale (the heads'
        training scale): a large one in windows, a smaller one whole, not blown up."""
        if not self.tile or self._resize_scale(h, w) >= self.window_scale * 0.999:
            return None
        return tile_windows(h, w, self.tile, self.tile_overlap)

    def _model_input(self, image: np.ndarray, scale: float | None = None) -> dict:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        if self.cfg.INPUT.FORMAT == "RGB":
            image = image[:, :, ::-1]
        h, w = image.shape[:2]
        if scale is None:
            resized = self.resize.get_transform(image).apply_image(image)
        elif scale == 1.0:
            resized = image
        else:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            resized = T.ResizeTransform(h, w, *size).apply_image(image)
        tensor = torch.as_tensor(
            np.ascontiguousarray(resized.transpose(2, 0, 1)), dtype=torch.float32
        )
        return {"image": tensor, "height": h, "width": w}

    def predict_instances(self, images: Sequence[np.ndarray], scale: float | None = None) -> list:
        """Run the model on images (one forward pass) and return detectron2 ``Instances``; each
        image is resized by the test-size resize, or by ``scale`` when given."""
        with torch.inference_mode(), autocast(self.bf16):
            outputs = self.forward_model([self._model_input(im, scale) for im in images])
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
        batch = list(zip(sources, frames, images))
        return self._predictions(batch, self._forward(batch))

    def __call__(
        self, image: np.ndarray, source: str = "", frame: int | None = None
    ) -> ImagePrediction:
        """Predict one BGR image."""
        return self.predict_batch([image], [source], [frame])[0]

    def predict_stream(
        self, items: Iterable[tuple[str, int | None, np.ndarray]]
    ) -> Iterator[tuple[np.ndarray, ImagePrediction]]:
        """Predict ``(source, frame, image)`` items lazily, ``batch_size`` at a time (auto: the
        first batches time the candidate sizes, then the fastest); yields ``(image, prediction)``
        in input order. Memory holds one batch, whatever the stream length.
        """
        items = iter(items)
        calibration = None
        if not self.batch_size:
            first = next(items, None)
            if first is None:
                return
            items = itertools.chain([first], items)
            calibration = calibration_for(self._batch_key(first), self.cfg.MODEL.DEVICE)
            self.calibration = calibration
        device, group = self.cfg.MODEL.DEVICE, self._input_size
        batches = stream_batches(items, self._forward, self.batch_size, calibration, device, group)
        for batch, preds in batches:
            yield from zip([b[2] for b in batch], self._predictions(batch, preds))

    def _forward(self, batch: list[tuple[str, int | None, np.ndarray]]) -> list[ImagePrediction]:
        """``(source, frame, image)`` items -> ungraded predictions: whole images in one pass;
        a tiled image's windows in passes of ``len(batch)`` windows, then merged."""
        whole = [i for i, b in enumerate(batch) if self.windows(*b[2].shape[:2]) is None]
        preds: list = [None] * len(batch)
        if whole:
            scale = self.window_scale if self.tile else None  # None: the test-size resize
            instances = self.predict_instances([batch[i][2] for i in whole], scale)
            for i, inst in zip(whole, instances):
                preds[i] = from_instances(inst, batch[i][0], self.detector_class_names, batch[i][1])
        for i, (src, frame, image) in enumerate(batch):
            if preds[i] is None:
                preds[i] = self._predict_tiled(image, src, frame, chunk=len(batch))
        return preds

    def _predict_tiled(
        self, image: np.ndarray, source: str, frame: int | None, chunk: int
    ) -> ImagePrediction:
        """One large image predicted window by window at the window scale, then merged."""
        windows = self.windows(*image.shape[:2])
        parts = []
        for k in range(0, len(windows), max(1, chunk)):
            group = windows[k : k + max(1, chunk)]
            crops = [image[w.y0 : w.y1, w.x0 : w.x1] for w in group]
            for win, inst in zip(group, self.predict_instances(crops, self.window_scale)):
                parts.append((win, from_instances(inst, source, self.detector_class_names, frame)))
        return merge_windows(parts, image.shape[:2], source, self.detector_class_names, frame)

    def _predictions(self, batch, preds: list[ImagePrediction]) -> list[ImagePrediction]:
        """Grade the heads of ``(source, frame, image)`` items' predictions, with a grader."""
        if self.grader is not None:
            preds = self.grader.grade_batch([b[2] for b in batch], preds)
        if self.parts is not None:
            preds = [with_parts(self.parts, b[2], p) for b, p in zip(batch, preds)]
        return preds

    def _input_size(self, item: tuple[str, int | None, np.ndarray]) -> tuple[int, ...]:
        """The model's input size for a stream item's image (after the test-size resize; a tiled
        image: its size, the windows' depend on it)."""
        h, w = item[2].shape[:2]
        if self.windows(h, w) is not None:
            return (h, w, self.tile)
        if self.tile:
            return (round(h * self.window_scale), round(w * self.window_scale))
        short, longest = self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MAX_SIZE_TEST
        return T.ResizeShortestEdge.get_output_shape(h, w, short, longest)

    def _batch_key(self, item: tuple[str, int | None, np.ndarray]) -> tuple:
        """What the best batch size depends on: device, threads, model (config and weights) and
        the model's input size (of the stream's first image)."""
        model = hashlib.sha1(self.cfg.dump().encode()).hexdigest()
        threads = torch.get_num_threads()
        return (self.cfg.MODEL.DEVICE, threads, model, self.weights, self._input_size(item))

    def predict_paths(
        self, paths: Iterable[str | os.PathLike], decode_ahead: int = 4
    ) -> Iterator[tuple[str, ImagePrediction | None, str | None]]:
        """Decode image files in a background thread and predict them (batched as
        :meth:`predict_stream`), in the order given.

        Yields ``(path, prediction, None)``, or ``(path, None, reason)`` for a file that cannot be
        decoded (it is skipped; the caller decides how to report it).
        """
        from sperm_d2.inference.sources import read_image

        errors: collections.deque = collections.deque()  # (position, path, reason)
        positions: collections.deque = collections.deque()  # of the decoded images, in order

        def decoded() -> Iterator[tuple[str, None, np.ndarray]]:
            for i, (path, (image, error)) in enumerate(prefetch(paths, read_image, decode_ahead)):
                if image is None:
                    errors.append((i, str(path), error))
                else:
                    positions.append(i)
                    yield str(path), None, image

        for _, pred in self.predict_stream(decoded()):
            position = positions.popleft()
            while errors and errors[0][0] < position:  # unreadable files before this image
                _, path, error = errors.popleft()
                yield path, None, error
            yield pred.source, pred, None
        for _, path, error in errors:  # after the last readable image
            yield path, None, error
