"""The inference API's own plain result type, and its conversion from detectron2 ``Instances``.

Everything downstream (overlays, CSV, morphometrics, labelme export, metrics) reads
:class:`ImagePrediction`; only :func:`from_instances` knows about detectron2.
"""

import dataclasses
from typing import Any

import numpy as np


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
    """

    source: str
    image_size: tuple[int, int]
    boxes: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    class_names: tuple[str, ...]
    frame: int | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def labels(self) -> list[str]:
        """Class name of each head."""
        return [self.class_names[int(c)] for c in self.classes]

    def above(self, min_score: float) -> "ImagePrediction":
        """A copy holding only the heads scoring at least ``min_score``."""
        keep = self.scores >= min_score
        return dataclasses.replace(
            self,
            boxes=self.boxes[keep],
            masks=self.masks[keep],
            scores=self.scores[keep],
            classes=self.classes[keep],
        )

    def top(self, k: int) -> "ImagePrediction":
        """A copy holding only the ``k`` highest-scoring heads."""
        return dataclasses.replace(
            self,
            boxes=self.boxes[:k],
            masks=self.masks[:k],
            scores=self.scores[:k],
            classes=self.classes[:k],
        )

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
