"""PointRend (Kirillov et al. 2020; detectron2's ``projects/PointRend``) as the detector's mask
head: its config keys, and its mask head made safe for batches without a head.

detectron2's ``PointRendMaskHead`` crashes a training (``torch.cat(): expected a non-empty list
of Tensors`` in ``sample_point_labels``) when no image of a batch has a foreground proposal: it
samples point labels from the ground-truth masks of zero instances. On full fields trained on
random 512-px windows that happens by chance (a batch of windows of background and debris; it
stopped a long fields run, README Results). The standard mask head gives a zero loss
for such a batch; :class:`SpermPointRendMaskHead` does the same, its zero connected to every
parameter of the head so that distributed training sees them all used.
"""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY
from detectron2.projects.point_rend import PointRendMaskHead, add_pointrend_config

#: the mask head's registered name (``MODEL.ROI_MASK_HEAD.NAME``); the stock one crashes a
#: training on a batch without a head, so config/validate.py refuses it for training
MASK_HEAD = "SpermPointRendMaskHead"
STOCK_MASK_HEAD = "PointRendMaskHead"


def add_point_rend_config(cfg: CfgNode) -> None:
    """Add PointRend's keys (``MODEL.POINT_HEAD``, ``MODEL.ROI_MASK_HEAD.*`` for the point head,
    ``MODEL.IMPLICIT_POINTREND``) to ``cfg``; :class:`SpermPointRendMaskHead` is registered by
    importing this module."""
    add_pointrend_config(cfg)


@ROI_MASK_HEAD_REGISTRY.register()
class SpermPointRendMaskHead(PointRendMaskHead):
    """detectron2's ``PointRendMaskHead``, with zero mask losses for a training batch without a
    foreground proposal (see the module docstring); otherwise the same, weights included."""

    def forward(self, features, instances):
        if self.training and sum(len(x) for x in instances) == 0:
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            losses = {"loss_mask": zero}
            if self.mask_point_on:
                losses["loss_mask_point"] = zero
            return losses
        return super().forward(features, instances)
