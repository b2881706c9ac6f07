"""The head-part segmenter's encoder as the head grader's feature extractor
(``SPERM.GRADER.BACKBONE`` ``part_unet``), so that a grader can start from a head-part run.

A head-part segmenter (``configs/sperm_head_parts_cpu.yaml``) learns, from every sperm of the
Sperm Parsing fields, where a head's acrosome, nucleus and vacuoles lie in its canonical crop:
a pretrained backbone for morphology that this project trains itself, with no download. The
trunk is that U-Net's encoder (:func:`sperm_d2.parts.model.encoder_levels`: the same levels,
GroupNorm, the same input normalisation: colour by ``MODEL.PIXEL_MEAN`` / ``PIXEL_STD``, the
mask channel to -1 / +1), so a head-part run's checkpoint given as ``MODEL.WEIGHTS`` fits it:
:func:`adapt_part_state` keeps its ``down.*`` weights under the trunk's prefix and drops its
decoder and classifier (the grader's classifier starts fresh; the checkpointer logs it). The
grader's crop should then be cut as the segmenter's was (``CROP_SIZE`` / ``HEAD_FRACTION``
equal to its ``SPERM.PARTS`` ones, ``MASK_MODE`` "channel";
``configs/sperm_grader_part_unet_cpu.yaml``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from sperm_d2.parts.model import encode, encoder_levels

logger = logging.getLogger(__name__)

#: the head-part segmenter's encoder in its state dict, and a key only a part segmenter has
_ENCODER, _DECODER = "down.", "up.0.0.weight"


class PartEncoderTrunk(nn.Module):
    """The U-Net encoder of ``channels`` levels on (N, ``in_channels``, S, S) normalised crops;
    returns the deepest level's features (stride 2 ** (levels - 1))."""

    def __init__(self, in_channels: int, channels: list[int]) -> None:
        super().__init__()
        self.down = encoder_levels(in_channels, [int(c) for c in channels])
        self.out_channels = int(channels[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return encode(self.down, x)[-1]


def is_part_state(state: dict) -> bool:
    """True for a part segmenter's model state (``SpermPartSegmenter``: encoder and decoder)."""
    return _DECODER in state and any(k.startswith(_ENCODER) for k in state)


def adapt_part_state(state: dict, prefixes: list[str]) -> dict:
    """``state`` (a part segmenter's) reduced to its encoder, renamed for every trunk at
    ``prefixes`` (e.g. ``["trunk."]``, or one per ensemble member); any other state unchanged."""
    if not prefixes or not is_part_state(state):
        return state
    encoder = {k: v for k, v in state.items() if k.startswith(_ENCODER)}
    logger.info(
        "head-part segmenter's encoder (%d tensors; its decoder and classifier dropped) -> %s",
        len(encoder),
        ", ".join(prefixes),
    )
    return {p + k: v for p in prefixes for k, v in encoder.items()}
