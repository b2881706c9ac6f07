"""The inference API's own plain result type, and its conversion from detectron2 ``Instances``.

Everything downstream (overlays, CSV, morphometrics, labelme export, metrics) reads
:class:`ImagePrediction`; only :func:`from_instances` knows about detectron2.
"""

import dataclasses
from typing import Any

import numpy as np

from sperm_d2.masks import SAME_HEAD_IOU, one_per_head_keep

#: optional per-head arrays (``None`` when absent); :meth:`ImagePrediction._select` keeps them
#: aligned with boxes, masks, scores and classes
OPTIONAL_PER_HEAD = ("p_bad", "detector_classes", "part_labels")


@dataclasses.dataclass
class ImagePrediction:
    """Detected heads in one image (or video frame), as numpy arrays in input-image pixels.

    Attributes:
        source: path of the image or video the pixels came from.
        image_size: ``(height, width)`` of the decoded image.
        boxes: ``(N, 4)`` float32 boxes, XYXY absolute pixels.
        masks: ``(N, H, W)`` bool instance masks at image resolution.
        scores: ``(N,)`` float32 confidences, sorted in decreasing order.
        classes: ``(N,)`` int64 class indices into ``class_names`` (0-based).
        class_names: names of the classes, in category-id order (``cfg.SPERM.CLASSES``).
        frame: frame index for video frames, ``None`` for still images.
        p_bad: ``(N,)`` float32 probability that each head is bad, from the head grader;
            ``None`` without a grader (then ``classes`` are the detector's own).
        detector_classes: ``(N,)`` int64 the detector's own class of each head when a grader
            set ``classes``; ``None`` without a grader, or when the detector has one class
            (it finds heads, the grader grades them).
        part_labels: ``(N, H, W)`` uint8 parts of each head from a part segmenter (0 none,
            ``1 + i`` for ``part_names[i]``); ``None`` without one.
        part_names: the part classes of ``part_labels``.
    """

    source: str
    image_size: tuple[int, int]
    boxes: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    class_names: tuple[str, ...]
    frame: int | None = None
    p_bad: np.ndarray | None = None
    detector_classes: np.ndarray | None = None
    part_labels: np.ndarray | None = None
    part_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def labels(self) -> list[str]:
        """Class name of each head."""
        return [self.class_names[int(c)] for c in self.classes]

    def _select(self, index: Any) -> "ImagePrediction":
        """A copy holding only the heads ``index`` picks (boolean mask, slice or integer array),
        with every per-head array (optional ones too, where present) indexed alike."""
        names = ("boxes", "masks", "scores", "classes")
        changes = {name: getattr(self, name)[index] for name in names}
        for name in OPTIONAL_PER_HEAD:
            value = getattr(self, name)
            if value is not None:
                changes[name] = value[index]
        return dataclasses.replace(self, **changes)

    def above(self, min_score: float) -> "ImagePrediction":
        """A copy holding only the heads scoring at least ``min_score``."""
        return self._select(self.scores >= min_score)

    def top(self, k: int) -> "ImagePrediction":
        """A copy holding only the ``k`` highest-scoring heads."""
        return self._select(slice(None, k))

    def one_per_head(self, iou_threshold: float = SAME_HEAD_IOU) -> "ImagePrediction":
        """A copy keeping one detection per head: its highest-scoring one (arg-max class).

        detectron2's Mask R-CNN can emit a "good" and a "bad" detection of the same head;
        Matterport/PixelLib keep only the arg-max class of a region. Class-agnostic: in
        descending score order a head is kept only if its mask IoU (box IoU where a mask is
        empty) with every head already kept is below ``iou_threshold``
        (:func:`sperm_d2.masks.one_per_head_keep`). The kept heads stay in their order.
        """
        keep = one_per_head_keep(self.masks, self.scores, iou_threshold, self.boxes)
        return self._select(np.sort(keep))

    def counts(self) -> dict[str, int]:
        """Number of heads per class name (every class present, zeros included)."""
        return {name: int((self.classes == i).sum()) for i, name in enumerate(self.class_names)}


def empty_prediction(
    source: str, image_size: tuple[int, int], class_names: tuple[str, ...], frame: int | None = None
) -> ImagePrediction:
    """A prediction with no heads (correct shapes and dtypes)."""
    h, w = image_size
    return ImagePrediction(
        source=source,
        image_size=(h, w),
        boxes=np.zeros((0, 4), np.float32),
        masks=np.zeros((0, h, w), bool),
        scores=np.zeros((0,), np.float32),
        classes=np.zeros((0,), np.int64),
        class_names=tuple(class_names),
        frame=frame,
    )


def from_instances(
    instances: Any, source: str, class_names: tuple[str, ...], frame: int | None = None
) -> ImagePrediction:
    """Convert detectron2 ``Instances`` (``pred_boxes``, ``scores``, ``pred_classes``, optional
    ``pred_masks``) at image resolution into an :class:`ImagePrediction`, sorted by score.

    Without ``pred_masks`` (a box-only model) each mask is its filled box, so every consumer can
    rely on masks being present.
    """
    h, w = (int(s) for s in instances.image_size)
    instances = instances.to("cpu")
    scores = instances.scores.numpy().astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    boxes = instances.pred_boxes.tensor.numpy().astype(np.float32)[order]
    classes = instances.pred_classes.numpy().astype(np.int64)[order]
    if instances.has("pred_masks"):
        masks = instances.pred_masks.numpy().astype(bool)[order]
    else:
        masks = np.zeros((len(order), h, w), bool)
        for m, (x0, y0, x1, y1) in zip(masks, np.round(boxes).astype(int)):
            m[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    if masks.shape[1:] != (h, w):
        raise ValueError(f"{source}: masks are {masks.shape[1:]}, image is {(h, w)}")
    return ImagePrediction(
        source=str(source),
        image_size=(h, w),
        boxes=boxes.reshape(-1, 4),
        masks=masks.reshape(-1, h, w),
        scores=scores[order],
        classes=classes,
        class_names=tuple(class_names),
        frame=frame,
    )
