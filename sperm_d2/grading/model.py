"""``SpermHeadGrader``: a CNN on canonical head crops, giving class probabilities (and so
``p_bad``) per head: a compact ResNet-style CNN trained from scratch, a torchvision ResNet
(``SPERM.GRADER.BACKBONE``, :mod:`sperm_d2.grading.trunk`) that can start from ImageNet
weights, or the head-part segmenter's encoder (:mod:`sperm_d2.grading.part_trunk`) that can
start from a head-part run. Registered in detectron2's ``META_ARCH_REGISTRY``, so
``build_model(cfg)``, ``DetectionCheckpointer`` and ``SpermTrainer`` serve it unchanged.

Input: a batch dict ``{"images": (N, C, S, S) uint8/float 0-255, "labels": (N,) int64,
"targets": (N, K) soft targets (optional, mixup / label smoothing), "class_weights": (K,)
(optional)}`` (see ``sperm_d2.grading.loader``). Training returns ``{"loss_cls": ...}``;
evaluation returns ``{"probs": (N, K)}``, averaged over the ``SPERM.GRADER.TTA`` views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from sperm_d2.flip_views import VIEWS, flip_dims
from sperm_d2.grading.crop import input_channels
from sperm_d2.grading.part_trunk import PartEncoderTrunk, adapt_part_state, is_part_state
from sperm_d2.grading.trunk import (
    TORCHVISION_ARCHS,
    TorchvisionTrunk,
    adapt_imagenet_state,
    is_imagenet_state,
)

#: test-time views of the aligned crop (flipped dimensions of an N, C, H, W batch): the head's
#: direction along and across its axis is ambiguous ("hflip" alone is not offered)
TTA_VIEWS = {mode: tuple(flip_dims(v) for v in VIEWS[mode]) for mode in ("none", "rot180", "flips")}


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Block(nn.Module):
    """Two 3x3 convolutions with a residual shortcut (a 1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x), inplace=True)


def adapt_trunk_state(state: dict, prefixes: list[str], backbone: str, own: dict) -> dict:
    """``state`` with a torchvision ResNet's weights (ImageNet) or a head-part segmenter's encoder
    renamed for the trunks at ``prefixes`` of a grader whose ``SPERM.GRADER.BACKBONE`` is
    ``backbone`` and whose own state is ``own``; a grader's own state (resuming, fine-tuning) and
    anything else unchanged.

    Raises:
        ValueError: a pretrained file that fits another backbone, or whose layers differ in shape
            from the trunk's (training would start from a random trunk with a warning only).
    """
    imagenet, part = is_imagenet_state(state), is_part_state(state)
    if not (imagenet or part):
        return state
    if (backbone in TORCHVISION_ARCHS) if imagenet else (backbone == "part_unet"):
        adapted = (
            adapt_imagenet_state(state, prefixes) if imagenet else adapt_part_state(state, prefixes)
        )
    else:
        kind = (
            "a torchvision ResNet's weights (SPERM.GRADER.BACKBONE resnet18, resnet34 or resnet50)"
            if imagenet
            else "a head-part segmenter's checkpoint (SPERM.GRADER.BACKBONE part_unet)"
        )
        raise ValueError(f"{kind}, not for this grader's backbone {backbone!r}")
    for key, value in adapted.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{key} is {tuple(value.shape)} in the file, {tuple(own[key].shape)} in the "
                "grader: give the grader the pretrained model's SPERM.GRADER.CHANNELS (its "
                "SPERM.PARTS.CHANNELS) and input channels (MASK_MODE)"
            )
    return adapted


@META_ARCH_REGISTRY.register()
class SpermHeadGrader(nn.Module):
    """Features, global average pooling, dropout and a linear classifier over
    ``MODEL.ROI_HEADS.NUM_CLASSES`` (the project's classes). Features: ``BACKBONE`` "compact",
    a stride-2 stem and a ResNet-style stack of ``SPERM.GRADER.CHANNELS`` stages (one residual
    block each, every stage but the first halving the resolution); or a ``trunk``: a torchvision
    ResNet or the head-part segmenter's encoder."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        g = cfg.SPERM.GRADER
        channels = list(g.CHANNELS)
        cin = input_channels(g.MASK_MODE)
        self.num_classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        self.label_smoothing = float(g.LABEL_SMOOTHING)
        self.gce_q = float(g.GCE_Q)
        self.tta = str(g.TTA)  # one of TTA_VIEWS (config/validate.py)
        mean = list(cfg.MODEL.PIXEL_MEAN)[:3] + [127.5] * (cin - 3)
        # the mask channel (0/255) is centred like the colour channels
        std = list(cfg.MODEL.PIXEL_STD)[:3] + [127.5] * (cin - 3)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, -1, 1, 1), False)
        self.backbone = str(g.BACKBONE)
        if self.backbone == "compact":
            # a stride-2 stem: the 64-px crop's detail fits 32 px of features, at a quarter the
            # cost
            self.stem = _conv_bn(cin, channels[0], stride=2)
            blocks, prev = [], channels[0]
            for i, c in enumerate(channels):
                blocks.append(_Block(prev, c, 1 if i == 0 else 2))
                prev = c
            self.blocks = nn.Sequential(*blocks)
            self.trunk = None
        elif self.backbone == "part_unet":  # channels as the head-part run's SPERM.PARTS
            self.trunk = PartEncoderTrunk(cin, channels)
            prev = self.trunk.out_channels
        else:  # one of trunk.TORCHVISION_ARCHS (config/validate.py)
            self.trunk = TorchvisionTrunk(self.backbone, cin)
            prev = self.trunk.out_channels
        self.dropout = nn.Dropout(float(g.DROPOUT))
        self.classifier = nn.Linear(prev, self.num_classes)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of an (N, C, S, S) batch in 0-255."""
        x = (images.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
        x = self.trunk(x) if self.trunk is not None else self.blocks(self.stem(x))
        logits = self.classifier(self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))
        # fp32 under bf16 autocast too: CPU autocast leaves (log-)softmax in bf16, too coarse for
        # the loss and for p_bad
        return logits.float()

    def trunk_prefixes(self) -> list[str]:
        """Where pretrained trunk weights go in this model's state dict (none for "compact")."""
        return [] if self.trunk is None else ["trunk."]

    def adapt_pretrained_state(self, state: dict) -> dict:
        """``state`` renamed for the trunk when it is another model's (the training checkpointer
        calls this on ``MODEL.WEIGHTS``): see :func:`adapt_trunk_state`."""
        return adapt_trunk_state(state, self.trunk_prefixes(), self.backbone, self.state_dict())

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax class probabilities (N, K), averaged over the ``SPERM.GRADER.TTA`` views."""
        if self.tta == "none":
            return F.softmax(self.logits(images), dim=1)
        views = [images.flip(dims) if dims else images for dims in TTA_VIEWS[self.tta]]
        n = images.shape[0]
        probs = F.softmax(self.logits(torch.cat(views)), dim=1)
        return probs.view(len(views), n, -1).mean(0)

    def forward(self, batch: dict):
        images = batch["images"]
        if not self.training:
            return {"probs": self.probabilities(images)}
        logits = self.logits(images)
        targets = batch.get("targets")
        if targets is None:
            targets = F.one_hot(batch["labels"].to(self.device), self.num_classes).float()
        targets = targets.to(self.device)
        if self.label_smoothing > 0:
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
        log_p = F.log_softmax(logits, dim=1)
        if self.gce_q > 0:
            # generalized cross-entropy (Zhang & Sabuncu 2018): (1 - p^q) / q per class, bounded,
            # so a head filed under the wrong class pulls less than under the log loss
            per_class = (1 - torch.exp(self.gce_q * log_p)) / self.gce_q
        else:
            per_class = -log_p
        weights = batch.get("class_weights")
        if weights is not None:  # inverse-frequency class weights ("loss" balancing)
            per_sample = (targets * per_class * weights.to(self.device)).sum(1)
            norm = (targets * weights.to(self.device)).sum(1).mean()
            return {"loss_cls": per_sample.mean() / norm}
        return {"loss_cls": (targets * per_class).sum(1).mean()}
