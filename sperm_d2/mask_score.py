"""A detection's score weighted by the confidence of its own mask (``SPERM.MASK_SCORE_POWER``).

Mask R-CNN scores a detection by its box classifier alone, so a head found with certainty but
outlined poorly ranks as high as a well-outlined one; COCO mask AP at strict IoU (AP75) pays for
every such head ranked above a good one. The mask head's own probabilities say how sure the
outline is: the *maskness* of a mask is the mean probability over its foreground pixels
(probability > 0.5), 1 for a crisp mask, lower where the boundary or the whole head is uncertain
(SOLOv2, Wang et al. 2020, "matrix NMS" section; Mask Scoring R-CNN learns the same with a head
of its own). With power ``p`` > 0 every detection's score becomes ``score * maskness ** p``;
0 leaves the scores as they are.

The rescoring runs as a forward hook of the ROI heads' mask head in inference mode, so it holds
for every way the mask head is called (detectron2's inference, the flip TTA's merged boxes, the
training run's evaluation rounds) and for any mask head that returns detectron2's per-instance
mask probabilities (the standard head and PointRend's).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["maskness", "rescore", "use_mask_scoring"]

#: attribute set on a mask head that already rescores (the hook is added once)
_FLAG = "_sperm_mask_score_power"


def maskness(probs: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) mask probabilities -> (N,): the mean probability of each mask's foreground
    pixels (probability > 0.5); 0 for a mask without any."""
    p = probs.float().flatten(1)
    fg = p > 0.5
    return (p * fg).sum(1) / fg.sum(1).clamp(min=1)


def rescore(instances: list, power: float) -> None:
    """``scores *= maskness(pred_masks) ** power`` in place for each Instances of ``instances``
    that holds mask probabilities."""
    for inst in instances:
        if len(inst) and inst.has("pred_masks") and inst.pred_masks.is_floating_point():
            inst.scores = inst.scores * maskness(inst.pred_masks).to(inst.scores.dtype) ** power


def _hook(module: nn.Module, inputs, output):
    if not module.training and isinstance(output, list):
        rescore(output, getattr(module, _FLAG))
    return output


def use_mask_scoring(model: nn.Module, power: float) -> nn.Module:
    """Rescore ``model``'s detections by their maskness to ``power`` (0, or a model without a
    mask head: unchanged); returns ``model``. Calling it again only changes the power."""
    head = getattr(getattr(model, "roi_heads", None), "mask_head", None)
    if head is None or not power and not hasattr(head, _FLAG):
        return model
    if not hasattr(head, _FLAG):
        head.register_forward_hook(_hook)
    setattr(head, _FLAG, float(power))
    return model
