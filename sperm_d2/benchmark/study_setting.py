"""The 2021 study's training setting for ``benchmarks/bench_train.py --study``: inputs, weights.

The study trained Mask R-CNN R-101-FPN at 512 px, batch 4 (PixelLib / TensorFlow). Timing that
setting here must not download anything, so:

* :func:`synthetic_batch` draws the batch with the project's synthetic scene generator (2-5 heads
  per 512-px image, polygon masks), in the form detectron2's training forward takes.
* :func:`calibrate_frozen_bn` gives the paper config's FrozenBN layers the statistics a
  pretrained checkpoint would hold. A FrozenBN layer is the affine map
  ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``, fixed from the running
  statistics a BatchNorm collected while pretraining. Freshly built, every one is the identity
  (mean 0, var 1, weight 1, bias 0), so each of R-101's 33 residual blocks adds a branch about as
  large as its input (the convs are He-initialised, which keeps the scale) and the activations
  grow block after block. On the synthetic 512-px batch (seed 0) the res5 features reach
  |x| ~ 1e7 (std 1.5e6; res2 std 20), the first step's losses are 1e3-1e5, and the second
  forward stops with detectron2's "Predicted boxes or scores contain Inf/NaN" (fp32 and bf16
  alike). Here each layer gets the per-channel mean and variance of its own input on the given
  images, in one forward pass in network order (a pre-forward hook, so every layer already sees
  the normalised output of the layers before it), with weight 1 and bias 0: what a BatchNorm in
  training mode would compute on that batch. Each layer then hands on zero-mean, unit-variance
  channels, as in a pretrained network (res2-res5 feature std 1.3-3.4 on that batch), the RPN
  and ROI heads get finite, ordinary-sized features, and the total loss starts at 2-4 and stays
  finite step after step. The calibration is a data-dependent initialisation for timing, not a
  substitute for pretrained weights.
* :func:`use_channels_last` puts the model's conv weights in channels-last (NHWC) layout, which
  oneDNN's CPU convolutions use without reordering (a layout, not a change of the model).
* :func:`step_flops` and :func:`gemm_peak` give a step's compute floor: its convolution and
  matrix-product FLOPs (forward and backward) at the best rate this CPU's convolution and matmul
  kernels reach on large operands. No step runs faster than its floor; wall time above it is the
  rest of the step (ROI Align, NMS, losses, element-wise layers, the optimizer) and GEMMs below
  peak.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from detectron2.data.detection_utils import annotations_to_instances
from detectron2.layers import FrozenBatchNorm2d
from detectron2.structures import BoxMode
from torch import nn

from sperm_d2.data.synthetic import render_scene

#: the study's setting: R-101-FPN, 512-px images, 4 images per iteration
STUDY_SIZE = 512
STUDY_BATCH = 4


def synthetic_batch(
    classes: list[str], num_images: int = STUDY_BATCH, size: int = STUDY_SIZE, seed: int = 0
) -> list[dict]:
    """``num_images`` synthetic ``size`` x ``size`` scenes as detectron2 training inputs.

    Each dict has ``image`` (uint8 CHW BGR tensor), ``instances`` (gt boxes, classes, polygon
    masks), ``height`` and ``width``: what ``DatasetMapper`` yields, without files or resizing.
    """
    batch = []
    for i in range(num_images):
        img, heads = render_scene(seed * 1000 + i, size, size)
        annotations = [
            {
                "bbox": [*poly.min(0), *poly.max(0)],
                "bbox_mode": BoxMode.XYXY_ABS,
                "segmentation": [poly.ravel().tolist()],
                "category_id": classes.index(name),
            }
            for name, poly in heads
        ]
        batch.append(
            {
                "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
                "instances": annotations_to_instances(annotations, (size, size), "polygon"),
                "height": size,
                "width": size,
            }
        )
    return batch


def _set_from_input(layer: FrozenBatchNorm2d, args: tuple) -> None:
    """Pre-forward hook: the layer's statistics become those of the input it is about to see."""
    x = args[0].detach().float()
    layer.running_mean.copy_(x.mean(dim=(0, 2, 3)))
    layer.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))
    layer.weight.fill_(1.0)
    layer.bias.zero_()


@torch.no_grad()
def calibrate_frozen_bn(model: nn.Module, batch: list[dict]) -> int:
    """Set every FrozenBN layer of ``model``'s backbone from ``batch`` (see the module docstring).

    ``model`` is a detectron2 ``GeneralizedRCNN``. Returns the number of layers set (0 for a model
    without FrozenBN, e.g. GroupNorm configs, which is left unchanged).
    """
    layers = [m for m in model.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    if not layers:
        return 0
    handles = [m.register_forward_pre_hook(_set_from_input) for m in layers]
    try:
        model.backbone(model.preprocess_image(batch).tensor)
    finally:
        for h in handles:
            h.remove()
    return len(layers)


def use_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D weights in channels-last layout (in place; returned for chaining).

    oneDNN's CPU convolutions then produce channels-last outputs whatever the input's layout, so
    the layout carries through the backbone and the ROI heads' convolutions without reorders.
    """
    return model.to(memory_format=torch.channels_last)


def step_flops(step: Callable[[], object]) -> float:
    """Run ``step`` once and return its FLOPs as torch's ``FlopCounterMode`` counts them: the
    convolutions and matrix products of the forward and backward passes (a multiply-add is 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def gemm_peak(dtype: torch.dtype, repeats: int = 5) -> float:
    """FLOP/s of this CPU's fastest kernel on large operands at ``dtype`` (the current torch
    threads): the best of ``repeats`` timings each of a 2048^3 matrix product and of a 3x3
    convolution (batch 4, 256 -> 256 channels, 128 x 128, channels-last), the larger rate."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(2048, 2048, generator=gen).to(dtype) for _ in range(2))
    x = torch.randn(4, 256, 128, 128, generator=gen).to(dtype, memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, generator=gen).to(dtype, memory_format=torch.channels_last)
    cases = [
        (lambda: a @ b, 2 * 2048**3),
        (lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * 4 * 256 * 256 * 9 * 128 * 128),
    ]
    best = 0.0
    with torch.no_grad():
        for fn, flops in cases:
            fn()  # one-off set-up (oneDNN primitive, weight reorder)
            for _ in range(repeats):
                t = time.perf_counter()
                fn()
                best = max(best, flops / (time.perf_counter() - t))
    return best
