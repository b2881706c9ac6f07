"""Test-time augmentation of the detector by flips (``SPERM.INFER_TTA``).

A microscope field has no up, down, left or right: a head flipped is a head. The detector sees
each image as given and flipped (the same flips as the grader's ``SPERM.GRADER.TTA``), the
boxes of all views are merged by NMS, and the mask head is run on the merged boxes in every view
and its mask probabilities averaged, which smooths the outline where a single view hesitates.
The merging and averaging are detectron2's own :class:`GeneralizedRCNNWithTTA`; this module only
gives it flip views of the image the predictor has already resized (the test-size resize, or a
tiled window's scale) instead of its multi-scale resizes, and flips vertically flipped masks
back too (detectron2's undoes horizontal flips only).

Each view costs a detection pass and a mask pass (a second backbone pass), so n views cost about
2n plain passes; ``benchmarks/bench_fields.py --tta MODE`` measures it (README Results).
"""

from __future__ import annotations

import copy

import torch
from detectron2.data.transforms import (
    HFlipTransform,
    NoOpTransform,
    ResizeTransform,
    TransformList,
    VFlipTransform,
)
from detectron2.modeling import GeneralizedRCNN, GeneralizedRCNNWithTTA

from sperm_d2.flip_views import VIEWS, flip_dims


class FlipViews:
    """A ``tta_mapper`` for :class:`GeneralizedRCNNWithTTA`: a model input dict -> its flipped
    copies, each with the ``transforms`` from the original image (the predictor's resize, then
    the flips)."""

    def __init__(self, views: tuple[str, ...]) -> None:
        self.views = views

    def __call__(self, dataset_dict: dict) -> list[dict]:
        image = dataset_dict["image"]
        h, w = image.shape[1:3]
        orig = (dataset_dict["height"], dataset_dict["width"])
        resize = ResizeTransform(*orig, h, w) if (h, w) != orig else NoOpTransform()
        out = []
        for flips in self.views:
            tfms = [resize]
            if "h" in flips:
                tfms.append(HFlipTransform(w))
            if "v" in flips:
                tfms.append(VFlipTransform(h))
            dims = flip_dims(flips, 2, 1)  # of (C, H, W)
            view = copy.copy(dataset_dict)
            view["image"] = torch.flip(image, dims) if dims else image
            view["transforms"] = TransformList(tfms)
            out.append(view)
        return out


class FlipTTA(GeneralizedRCNNWithTTA):
    """detectron2's TTA wrapper over flip views; undoes vertical flips of the masks as well."""

    def _reduce_pred_masks(self, outputs, tfms):
        for output, tfm in zip(outputs, tfms):
            # pred_masks are (R, 1, M, M) grids over each box, as the view saw it
            dims = [
                d
                for d, kind in ((3, HFlipTransform), (2, VFlipTransform))
                if any(isinstance(t, kind) for t in tfm.transforms)
            ]
            if dims:
                output.pred_masks = output.pred_masks.flip(dims=dims)
        return torch.stack([o.pred_masks for o in outputs], dim=0).mean(dim=0)


def with_flip_tta(model: torch.nn.Module, cfg, mode: str) -> torch.nn.Module:
    """``model`` itself for ``mode`` "none", else a :class:`FlipTTA` over it (a Mask R-CNN:
    ``GeneralizedRCNN``); ``mode`` is one of :data:`VIEWS` (config/validate.py checks it)."""
    if mode == "none":
        return model
    if not isinstance(model, GeneralizedRCNN):
        raise ValueError(
            f"SPERM.INFER_TTA {mode!r} needs a Mask R-CNN (GeneralizedRCNN), got "
            f"{type(model).__name__}"
        )
    # views batched together: all of one image's views in one pass
    return FlipTTA(cfg, model, tta_mapper=FlipViews(VIEWS[mode]), batch_size=len(VIEWS[mode]))
