"""``PartParser``: trained part segmenters run on whole images, their parts given to each head.

Loaded from one or two part run folders (``config.yaml`` + ``model_best.pth``, as ``--parts RUN
[RUN]`` or ``SPERM.PARTS.RUN`` name them), at most one of each input
(``SPERM.PARTS.INPUT``):

* a **field** segmenter labels every pixel of the image; each head gets the parts around it
  (:func:`sperm_d2.parts.assign.assign_part_labels`): acrosome, nucleus, vacuole, midpiece, tail;
* a **head** segmenter sees each detected head in its canonical crop with its mask
  (:mod:`sperm_d2.parts.head_crop`) and splits the head's mask into acrosome, nucleus and
  vacuole: the detector's outline stays the head's outline.

With both, the head segmenter gives the head parts and the field segmenter the midpiece and tail
(its head-part pixels are dropped; inside the head's outline the head parts win, as the
annotation paints them: :data:`sperm_d2.parts.targets.PAINT_ORDER`); with the head segmenter
alone a head has no midpiece or tail (their criteria are then not assessable).
Each head's parts are a label map of its own (:meth:`PartParser.part_labels`, what inference
keeps); :meth:`PartParser.parse_image` also gives the image's label map, :meth:`PartParser.parse`
the parts as masks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from sperm_d2.config import setup_cfg
from sperm_d2.errors import InputError
from sperm_d2.masks import Crop, mask_box
from sperm_d2.model_weights import load_model_weights
from sperm_d2.parts import is_part_segmenter
from sperm_d2.parts.assign import HEAD_MARGIN, assign_part_labels, part_masks
from sperm_d2.parts.head_crop import crop_matrix, cut_head, head_patch, to_patch
from sperm_d2.parts.targets import HEAD_PARTS, head_part_codes, paint_rank
from sperm_d2.precision import autocast, use_bf16
from sperm_d2.weights_io import CheckpointError, check_model_weights

#: share of a head's mask the head segmenter must call head (not background) for it to get parts
MIN_HEAD_SHARE = 0.5
#: parameter name prefix of the part segmenter (``SpermPartSegmenter``'s U-Net encoder; the
#: grader has a ``classifier.`` too)
PART_KEYS = ("down.",)
#: checkpoints tried, in order, in a part run folder
RUN_CHECKPOINTS = ("model_best.pth", "model_final.pth")


def check_part_checkpoint(path: str | os.PathLike, label: str) -> Path:
    """``path`` once :func:`sperm_d2.weights_io.check_weights_file` has read it as a checkpoint
    (``label``: what it is, or the argument that gave it, shown after its path); ``InputError``
    in one line naming the file when it is missing, empty, truncated, refused or not weights."""
    try:
        check_model_weights(str(path), label, PART_KEYS, "a part segmenter")
    except CheckpointError as e:
        raise InputError(str(e)) from None
    return Path(path)


def part_run(
    run_dir: str | os.PathLike, weights: str | os.PathLike | None = None
) -> tuple[CfgNode, Path]:
    """(config, checkpoint) of a part segmenter's run folder; ``InputError`` in one line when it
    is not one or its checkpoint is no readable checkpoint.

    The checkpoint is ``weights`` when given (a path, as ``--weights`` names it), else the run's
    ``model_best.pth``, else its ``model_final.pth``. An unreadable ``model_best.pth`` (truncated,
    empty, not weights) is refused, naming it, rather than passed over for ``model_final.pth``:
    the detector's run folders do the same, and a silent fallback would hide the broken file and
    run other weights than the run chose.
    """
    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise InputError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = setup_cfg(str(config))
    if not is_part_segmenter(cfg):
        raise InputError(
            f"{run_dir}: not a part segmenter run (MODEL.META_ARCHITECTURE is "
            f"{cfg.MODEL.META_ARCHITECTURE}, not SpermPartSegmenter)"
        )
    if weights:
        return cfg, check_part_checkpoint(weights, "--weights")
    for name in RUN_CHECKPOINTS:
        if (run_dir / name).is_file():
            return cfg, check_part_checkpoint(run_dir / name, "the part run's checkpoint")
    raise InputError(f"{run_dir}: no checkpoint ({', '.join(RUN_CHECKPOINTS)}) in the run folder")


def part_runs(given, cfg: CfgNode) -> list[str]:
    """The part run folders to load: ``given`` (one folder or a list, as ``--parts`` takes
    them), else the detector config's ``SPERM.PARTS.RUN``; none for "none" or nothing."""
    runs = [given] if isinstance(given, (str, os.PathLike)) else list(given or [])
    if not runs and cfg.SPERM.PARTS.RUN:
        runs = [cfg.SPERM.PARTS.RUN]
    runs = [str(r) for r in runs if str(r).strip()]
    return [] if any(r.strip().lower() == "none" for r in runs) else runs


def check_part_runs(runs: Sequence[str | os.PathLike]) -> list[tuple[CfgNode, Path]]:
    """(config, checkpoint) of each part run of ``runs`` (:func:`part_run`); ``InputError`` in
    one line when one is not a part run, its checkpoint is unreadable, two take the same input
    (``SPERM.PARTS.INPUT``) or they name different classes."""
    found = [part_run(r) for r in runs]
    if not found:
        raise InputError("no part segmenter run given")
    seen: dict[str, str] = {}
    for (cfg, _), run in zip(found, runs):
        kind = cfg.SPERM.PARTS.INPUT
        if kind in seen:
            raise InputError(
                f"{run}: a second {kind} part segmenter (after {seen[kind]}); give at most one "
                "field and one head run"
            )
        seen[kind] = str(run)
    classes = {tuple(cfg.SPERM.CLASSES) for cfg, _ in found}
    if len(classes) > 1:
        raise InputError(
            f"{', '.join(map(str, runs))}: the part segmenters name different classes "
            f"({' vs '.join(map(str, classes))})"
        )
    return found


def _tensor(images: np.ndarray) -> torch.Tensor:
    """(N, C, H, W) tensor of (N, H, W, C) images, BGR as in training (the loaders feed the
    decoded BGR fields whatever INPUT.FORMAT)."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


class PartModel:
    """One trained part segmenter on the CPU (or GPU), at ``SPERM.INFER_PRECISION``."""

    def __init__(self, cfg: CfgNode, weights: str | os.PathLike, source: str = "") -> None:
        cfg = cfg.clone()
        cfg.defrost()
        if not torch.cuda.is_available():
            cfg.MODEL.DEVICE = "cpu"
        cfg.freeze()
        self.cfg, self.source = cfg, str(source or weights)
        self.input = str(cfg.SPERM.PARTS.INPUT)
        self.class_names = tuple(cfg.SPERM.CLASSES)
        self.bf16 = use_bf16(cfg.SPERM.INFER_PRECISION, cfg.MODEL.DEVICE)
        self.model = build_model(cfg).eval()
        load_model_weights(self.model, weights)  # as data, whole: no pickled code runs

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, K + 1, H, W) float32 class probabilities (background first) of (N, H, W, C)
        images, C = 3 (BGR) or 4 (BGR + head mask, head input)."""
        with torch.inference_mode(), autocast(self.bf16):
            return self.model({"images": _tensor(images)})["probs"].float().cpu().numpy()

    def labels(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) uint8 class per pixel (0 background, 1 + i for ``class_names[i]``) of
        (N, H, W, C) images: the arg-max of :meth:`probabilities`."""
        with torch.inference_mode(), autocast(self.bf16):
            return self.model.labels(_tensor(images)).to(torch.uint8).cpu().numpy()

    def head_part_labels(self, image: np.ndarray, heads: np.ndarray) -> list[Crop | None]:
        """Head input: the head parts of each head ``heads`` (N, H, W) of a BGR image, as the
        image coordinates ``(y0, x0)`` of its patch and the patch's labels (uint8, 0 outside the
        head's mask, else 1 + i for ``class_names[i]``): each head's mask split among the head
        parts; ``None`` for a head whose mask the segmenter finds mostly background (less than
        :data:`MIN_HEAD_SHARE` head: no sperm head, e.g. a round cell; see
        :mod:`sperm_d2.parts.negatives`) or that is empty."""
        p = self.cfg.SPERM.PARTS
        size, fraction = int(p.CROP_SIZE), float(p.HEAD_FRACTION)
        channels = head_part_codes(self.class_names)
        ids = np.asarray(channels, np.uint8)
        out: list[Crop | None] = [None] * len(heads)
        todo = [(i, patch) for i, m in enumerate(heads) if (patch := head_patch(m)) is not None]
        batch = max(1, int(self.cfg.SPERM.EVAL_BATCH_SIZE))
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            matrices = [crop_matrix(patch.mask, size, fraction) for _, patch in chunk]
            crops = [cut_head(image, patch, m, size)[0] for (_, patch), m in zip(chunk, matrices)]
            probs = self.probabilities(np.stack(crops))
            for (i, patch), m, pr in zip(chunk, matrices, probs):
                back = to_patch(pr[[0, *channels]], m, patch)
                if (back.argmax(0)[patch.mask] > 0).mean() < MIN_HEAD_SHARE:
                    continue
                out[i] = ((patch.y0, patch.x0), np.where(patch.mask, ids[back[1:].argmax(0)], 0))
        return out


class PartParser:
    """A field and/or a head part segmenter (module docstring)."""

    def __init__(self, models: Sequence[PartModel]) -> None:
        """``models``: at most one of each input (:func:`check_part_runs` checks run folders)."""
        by_input = {m.input: m for m in models}
        if not models or len(by_input) < len(models):
            raise ValueError("give one or two part segmenters, at most one of each input")
        self.field, self.head = by_input.get("field"), by_input.get("head")
        self.class_names = models[0].class_names
        self.source = " + ".join(m.source for m in models)

    @classmethod
    def from_run(cls, runs: str | os.PathLike | Sequence[str | os.PathLike]) -> "PartParser":
        """From one part run folder or a list of them (a field and a head segmenter)."""
        runs = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
        found = check_part_runs(runs)
        return cls([PartModel(cfg, w, source=str(r)) for (cfg, w), r in zip(found, runs)])

    def segment(self, image: np.ndarray) -> np.ndarray:
        """(H, W) uint8 label map of a BGR image by the field segmenter: 0 background, 1 + i
        for ``class_names[i]``."""
        if self.field is None:
            raise InputError(f"{self.source}: no field part segmenter to label a whole image")
        return self.field.labels(image[None])[0]

    def _labels_and_stack(
        self, image: np.ndarray, heads: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The field segmenter's label map (zeros without one) and each head's parts as a label
        map of its own ((N, H, W) uint8, :func:`sperm_d2.parts.assign.assign_part_labels`), the
        head segmenter's head parts replacing the field segmenter's (module docstring)."""
        heads = np.asarray(heads, bool).reshape(-1, *image.shape[:2])
        if self.field is not None:
            labels = self.segment(image)
            stack = assign_part_labels(labels, heads, self.class_names)
        else:
            labels = np.zeros(image.shape[:2], np.uint8)
            stack = np.zeros(heads.shape, np.uint8)
        if self.head is not None:
            ids = head_part_codes(self.class_names)
            for own, head, theirs in zip(stack, heads, self.head.head_part_labels(image, heads)):
                # the field's head parts go (within HEAD_MARGIN of the head: in this box), also
                # for a head the segmenter turned down, which keeps no head part
                box = mask_box(head, HEAD_MARGIN + 1) if self.field is not None else None
                if box is not None:
                    own[box][np.isin(own[box], ids)] = 0
                if theirs is not None:
                    (y, x), patch = theirs
                    region = own[y : y + patch.shape[0], x : x + patch.shape[1]]
                    inside = patch > 0  # the head's outline: its parts over midpiece and tail
                    region[inside] = patch[inside]
        return labels, stack

    def _produced(self) -> list[str]:
        """The parts these segmenters give a head (no midpiece or tail without a field one)."""
        if self.field is not None:
            return list(self.class_names)
        return [n for n in self.class_names if n in HEAD_PARTS]

    def parse_image(
        self, image: np.ndarray, heads: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """``(label map, parts per head)`` of a BGR image and its heads ``heads`` (N, H, W):
        the field segmenter's labels with the head segmenter's parts painted over the heads
        (module docstring)."""
        labels, stack = self._labels_and_stack(image, heads)
        if self.head is not None:
            # the head segmenter's parts replace the field segmenter's
            labels[np.isin(labels, head_part_codes(self.class_names))] = 0
            for i in paint_rank(self.class_names):
                for own in stack:
                    labels[own == i + 1] = i + 1
        return labels, part_masks(stack, self.class_names, self._produced())

    def part_labels(self, image: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """The parts of each head ``heads`` (N, H, W) of a BGR image as a label map of its own,
        (N, H, W) uint8 (0 none, 1 + i for ``class_names[i]``), as :meth:`parse_image` gives
        them, without its label map (no segmenter runs for an image without heads)."""
        if len(heads) == 0:
            return np.zeros((0, *image.shape[:2]), np.uint8)
        return self._labels_and_stack(image, heads)[1]

    def parse(self, image: np.ndarray, heads: np.ndarray) -> list[dict[str, np.ndarray]]:
        """The parts of each head ``heads`` (N, H, W) of a BGR image (part name -> bool mask),
        as :meth:`parse_image` gives them, without painting its label map."""
        return part_masks(self.part_labels(image, heads), self.class_names, self._produced())
