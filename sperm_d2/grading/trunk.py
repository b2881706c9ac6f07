"""A torchvision ResNet as the head grader's feature extractor (``SPERM.GRADER.BACKBONE``
``resnet18`` / ``resnet34`` / ``resnet50``), so that users who have ImageNet weights can start
from them.

The trunk keeps torchvision's own module names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so
a torchvision state dict (``torchvision.models.resnet18(weights=...).state_dict()``, or the file
torchvision downloads, e.g. ``https://download.pytorch.org/models/resnet18-f37072fd.pth``) given
as ``MODEL.WEIGHTS`` fits it under the model's ``trunk.`` prefix: :func:`adapt_imagenet_state`
renames its keys (and drops its 1000-class ``fc``) when the training checkpointer loads it. The
mask channel (``SPERM.GRADER.MASK_MODE`` "channel") enters through its own 7x7 convolution added
to ``conv1``'s output and initialised to zero, so the ImageNet ``conv1`` keeps its 3-channel
shape and the pretrained model starts out seeing the colour crop exactly as it was trained to.
"""

from __future__ import annotations

import logging

import torch
import torchvision
from torch import nn

logger = logging.getLogger(__name__)

#: ``SPERM.GRADER.BACKBONE`` values served by this module -> feature channels of ``layer4``
TORCHVISION_ARCHS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
#: the torchvision modules the trunk keeps (its ``avgpool`` and ``fc`` are the grader's own)
_KEPT = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class TorchvisionTrunk(nn.Module):
    """torchvision ``arch`` up to ``layer4`` (randomly initialised; ImageNet weights come from
    ``MODEL.WEIGHTS``) on (N, ``in_channels``, S, S) normalised crops; channels 4+ (the mask) go
    through ``mask_conv``."""

    def __init__(self, arch: str, in_channels: int) -> None:
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        for name in _KEPT:
            setattr(self, name, getattr(net, name))
        self.out_channels = TORCHVISION_ARCHS[arch]
        extra = in_channels - 3
        self.mask_conv = None
        if extra > 0:
            self.mask_conv = nn.Conv2d(extra, net.conv1.out_channels, 7, 2, 3, bias=False)
            nn.init.zeros_(self.mask_conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x[:, :3])
        if self.mask_conv is not None:
            y = y + self.mask_conv(x[:, 3:])
        y = self.maxpool(self.relu(self.bn1(y)))
        return self.layer4(self.layer3(self.layer2(self.layer1(y))))


def is_imagenet_state(state: dict) -> bool:
    """True for a torchvision classification state dict (its ``conv1`` and ``fc`` at the top)."""
    return "conv1.weight" in state and "fc.weight" in state


def adapt_imagenet_state(state: dict, prefixes: list[str]) -> dict:
    """``state`` (a torchvision ResNet's) renamed for every trunk at ``prefixes`` (e.g.
    ``["trunk."]``, or one per ensemble member), its ``fc`` dropped; any other state unchanged.
    The grader's ``classifier`` and ``mask_conv`` then start fresh (the checkpointer logs them)."""
    if not prefixes or not is_imagenet_state(state):
        return state
    trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
    logger.info(
        "ImageNet weights (%d tensors, torchvision layout) -> %s", len(trunk), ", ".join(prefixes)
    )
    return {p + k: v for p in prefixes for k, v in trunk.items()}
