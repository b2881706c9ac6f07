"""``SpermPartSegmenter``: a small U-Net from scratch giving every pixel of a field a part class.

Registered in detectron2's ``META_ARCH_REGISTRY``, so ``build_model(cfg)``, the checkpointer and
the trainer serve it unchanged. GroupNorm throughout: batches are a few windows, too few for
BatchNorm statistics, and GroupNorm behaves the same in training and evaluation.

Input: a batch dict ``{"images": (N, C, H, W) 0-255 in INPUT.FORMAT order, "targets": (N, H, W)
int64 label maps (training; 0 background, 1 + i for SPERM.CLASSES[i])}`` (``parts.loader``);
C is 3, or 4 with ``SPERM.PARTS.INPUT "head"``, where the 4th channel is the head's mask (0/255,
``parts.head_loader``).
Training returns ``{"loss_parts": ...}`` (class-weighted cross-entropy) and, with
``SPERM.PARTS.DICE_WEIGHT`` > 0, ``"loss_parts_dice"`` (:func:`soft_dice_loss`); evaluation
returns ``{"probs": (N, K + 1, H, W)}``, the fp32 softmax of the logits (averaged over the
``SPERM.PARTS.TTA`` flip views, each flipped back) plus ``SPERM.PARTS.LOGIT_BIAS`` (chosen on
val, :mod:`sperm_d2.parts.calibrate`). Any H, W: inputs are padded to a multiple of the deepest
stride and the outputs cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from sperm_d2.flip_views import VIEWS, flip_dims
from sperm_d2.parts.upsample import upsampled_argmax


class _GroupNorm(nn.GroupNorm):
    """GroupNorm computed in fp32 whatever the input's dtype (what CUDA's autocast does; CPU
    autocast leaves it in bf16), the output in the input's dtype: on CPU, bf16 GroupNorm over
    channels-last maps of few channels (the field segmenter's first level: 8) is several times
    slower than fp32 (README Results, parts: the rest of the part cost)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps)
        return out.to(x.dtype)


def _gn(channels: int) -> nn.GroupNorm:
    return _GroupNorm(min(8, channels // 4) or 1, channels)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        _gn(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        _gn(cout),
        nn.ReLU(inplace=True),
    )


def soft_dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """1 - the mean soft Dice of the part classes (1..K; background, class 0, left out), each
    class's Dice over the whole batch ("batch Dice", as nnU-Net): ``(2 sum(p t) + s) /
    (sum(p) + sum(t) + s)`` with ``p`` the softmax of ``logits`` (N, K + 1, H, W) and ``t`` the
    one-hot ``targets`` (N, H, W). ``smooth`` keeps a class absent from the batch and not
    predicted at Dice 1 (no loss) and one predicted but absent near 0."""
    probs = F.softmax(logits.float(), dim=1)[:, 1:]
    onehot = F.one_hot(targets, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    dice = (2 * inter + smooth) / (probs.sum(dims) + onehot.sum(dims) + smooth)
    return 1 - dice.mean()


def encoder_levels(in_channels: int, channels: list[int]) -> nn.ModuleList:
    """The U-Net's encoder: one double convolution per entry of ``channels`` (the part
    segmenter's ``down``; also the head grader's ``part_unet`` trunk, which starts from it)."""
    levels, prev = nn.ModuleList(), in_channels
    for c in channels:
        levels.append(_double_conv(prev, c))
        prev = c
    return levels


def encode(levels: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """Every encoder level's output for the normalised input ``x``, finest first (a stride-2
    max-pool before each level but the first)."""
    features = []
    for i, block in enumerate(levels):
        x = block(x if i == 0 else F.max_pool2d(x, 2))
        features.append(x)
    return features


@META_ARCH_REGISTRY.register()
class SpermPartSegmenter(nn.Module):
    """U-Net: ``SPERM.PARTS.CHANNELS`` encoder levels (the first at the working resolution
    below, each next one at half the previous after a stride-2 max-pool), a mirrored decoder
    with skip connections, and a 1x1 classifier over background +
    ``MODEL.ROI_HEADS.NUM_CLASSES`` parts (the project's ``SPERM.CLASSES``). The first level
    works at the input's resolution times ``SPERM.PARTS.SCALE`` (1 = native; below 1 the input
    is resized down with antialiasing and the logits bilinearly back up, so outputs and losses
    stay at the input's size)."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        p = cfg.SPERM.PARTS
        channels = [int(c) for c in p.CHANNELS]
        self.num_classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES) + 1  # + background
        weights = [float(w) for w in p.CLASS_WEIGHTS]
        self.register_buffer(
            "class_weights", torch.tensor(weights or [1.0] * self.num_classes), False
        )
        self.dice_weight = float(p.DICE_WEIGHT)
        bias = [float(b) for b in p.LOGIT_BIAS] or [0.0] * self.num_classes
        self.register_buffer("logit_bias", torch.tensor(bias).view(1, -1, 1, 1), False)
        self.tta_views = VIEWS[str(p.TTA)]  # config/validate.py checks the mode
        self.register_buffer(
            "pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, -1, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(1, -1, 1, 1), False
        )
        self.stride = 2 ** (len(channels) - 1)
        self.scale = float(p.SCALE)  # config/validate.py keeps it in (0, 1]
        self.in_channels = 4 if p.INPUT == "head" else 3
        self.down = encoder_levels(self.in_channels, channels)
        prev = channels[-1]
        self.up = nn.ModuleList()
        for c in reversed(channels[:-1]):
            self.up.append(_double_conv(prev + c, c))
            prev = c
        self.classifier = nn.Conv2d(prev, self.num_classes, 1)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def scaled_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, K + 1, h, w) fp32 class logits of an (N, C, H, W) batch in 0-255 at the U-Net's
        own size (``SPERM.PARTS.SCALE`` times the input's; the input's at scale 1)."""
        h, w = images.shape[-2:]
        x = images.to(self.device, torch.float32)
        sh, sw = h, w
        if self.scale != 1.0:  # resized before normalising: the same, on fewer pixels
            sh, sw = max(1, round(h * self.scale)), max(1, round(w * self.scale))
            x = F.interpolate(x, size=(sh, sw), mode="bilinear", antialias=True)
        colour = (x[:, :3] - self.pixel_mean) / self.pixel_std
        # the mask channel (head input) to -1 / +1
        x = torch.cat([colour, x[:, 3:] / 127.5 - 1.0], 1) if self.in_channels == 4 else colour
        ph, pw = (-sh) % self.stride, (-sw) % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)
        skips = encode(self.down, x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x.to(skip.dtype), skip], dim=1))
        # fp32 under bf16 autocast too: CPU autocast leaves softmax in bf16, too coarse
        return self.classifier(x)[..., :sh, :sw].float()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, K + 1, H, W) fp32 class logits of an (N, C, H, W) batch in 0-255: the
        :meth:`scaled_logits` resized back to the input's size."""
        out = self.scaled_logits(images)
        size = images.shape[-2:]
        if out.shape[-2:] != size:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out

    def _views(self, images: torch.Tensor, logits) -> torch.Tensor:
        """``logits(images)`` averaged over the ``SPERM.PARTS.TTA`` views: each view's input
        flipped, its logits flipped back; one view at a time (a field's activations are large)."""
        total = None
        for view in self.tta_views:
            dims = flip_dims(view)
            out = logits(images.flip(dims)).flip(dims) if dims else logits(images)
            total = out if total is None else total + out
        return total / len(self.tta_views)

    def test_logits(self, images: torch.Tensor) -> torch.Tensor:
        """:meth:`logits` averaged over the ``SPERM.PARTS.TTA`` views."""
        return self._views(images, self.logits)

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W) int64 class per pixel (0 background): the arg-max of the evaluation's
        probabilities, taken on the biased logits (the softmax keeps their order) at the U-Net's
        size and resized only where it matters (:mod:`sperm_d2.parts.upsample`; flips and the
        bias commute with the bilinear resize), without a whole field's probabilities."""
        low = self._views(images, self.scaled_logits) + self.logit_bias
        size = tuple(images.shape[-2:])
        if tuple(low.shape[-2:]) == size:
            return low.argmax(1)
        return upsampled_argmax(low, size)

    def forward(self, batch: dict) -> dict:
        if not self.training:  # the biases chosen on val (parts.calibrate), zeros by default
            return {"probs": F.softmax(self.test_logits(batch["images"]) + self.logit_bias, dim=1)}
        logits = self.logits(batch["images"])
        targets = batch["targets"].to(self.device, torch.long)
        losses = {"loss_parts": F.cross_entropy(logits, targets, weight=self.class_weights)}
        if self.dice_weight > 0:
            losses["loss_parts_dice"] = self.dice_weight * soft_dice_loss(logits, targets)
        return losses
