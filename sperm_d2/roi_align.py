"""ROI Align for the project's models: fp32 boxes under autocast, and on the CPU a vectorised
formulation of the same computation.

Two things detectron2's ``ROIAlign`` (torchvision's ``roi_align``) does that cost us:

* It casts the ROI boxes to the features' dtype. Under bf16 autocast that rounds box coordinates
  to bf16's 8 significant bits: 2-px steps between 256 and 512 px, 1-px steps between 128 and
  256, a real shift for ~35-px heads. Here the boxes stay fp32 and the features are pooled in
  fp32, as torchvision's own autocast kernel does; the result comes back in the features' dtype.
* torchvision's CPU kernels run on one thread whatever ``torch.get_num_threads()`` says, loop
  over channels one at a time, and the backward kernel recomputes every sample's bilinear weights
  for every channel. At the study's setting ROI Align was a large share of a CPU training
  step's time (figures: ``benchmarks/RESULTS.md``, "ROI Align on the CPU").

On the CPU in training, ROI Align is computed as what it is, a weighted sum of feature vectors:
every output bin is the average of its bilinear samples, every sample the weighted sum of 4
neighbouring pixels, each a vector of C channels. :func:`roi_align_cpu` computes every bin's
pixel indices and weights with torchvision's rules (sample positions, the ``[-1, size]`` cut-off,
clamping at the border, the adaptive ``ceil(roi / bins)`` samples per bin) and sums the channel
vectors with ``torch.nn.functional.embedding_bag`` over the channels-last feature table:
vectorised over channels and multi-threaded, its backward a scatter of whole channel vectors.
Same numbers as torchvision up to float rounding (``tests/test_roi_align.py``); its speed
against torchvision's kernels is measured by ``benchmarks/bench_roi_align.py`` (figures in
``benchmarks/RESULTS.md``). Inference keeps torchvision's forward kernel: in an evaluation
round's many small calls (one image, ~16 ROIs per level) building the indices costs more than
it saves.

On other devices (CUDA) it is detectron2's ``ROIAlign`` as before, with fp32 boxes under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.layers import ROIAlign
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align

#: the most (bin, sample, neighbour) terms one call may lay out (~200 MB of indices and weights);
#: past it (a huge box on a fine map makes every box of the call as finely sampled) torchvision's
#: kernels run instead
MAX_TERMS = 2**24


def _axis(start, length, bins: int, samples, grid: int, size: int):
    """One axis of every ROI's sample grid: (pixels, weights), each (R, bins, grid, 2) for the
    low and high neighbour of every bin's ``grid`` samples (``grid`` >= the largest of
    ``samples``; the samples a ROI does not have weigh 0). Weights include the 1/samples of the
    bin average along this axis. torchvision's rules: a sample outside [-1, size] weighs 0, one
    below 0 is read at 0, one at or past size - 1 reads the last pixel."""
    step = (length / bins)[:, None, None]
    k = torch.arange(grid, dtype=start.dtype)[None, None, :]
    per_bin = samples.clamp(min=1).to(start.dtype)[:, None, None]
    b = torch.arange(bins, dtype=start.dtype)[None, :, None]
    pos = start[:, None, None] + b * step + (k + 0.5) * step / per_bin
    keep = (pos >= -1.0) & (pos <= size) & (k < samples[:, None, None])
    pos = pos.clamp(min=0)
    low = pos.long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    frac = torch.where(pos >= size - 1, torch.zeros_like(pos), pos - low)
    scale = keep.to(pos.dtype) / per_bin
    return torch.stack([low, high], -1), torch.stack([(1 - frac) * scale, frac * scale], -1)


def roi_align_cpu(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """torchvision's ``roi_align(input, rois, ...)`` for fp32 CPU tensors, as one
    ``embedding_bag`` over the channels-last feature table (see the module docstring);
    differentiable with respect to ``input``. ``rois``: (R, 5) rows of batch index, x1, y1, x2,
    y2 in image coordinates."""
    n, c, h, w = input.shape
    ph, pw = _pair(output_size)
    table = input.permute(0, 2, 3, 1).reshape(n * h * w, c).contiguous()  # a view if NHWC
    if not len(rois):
        empty = torch.zeros(0, 4, dtype=torch.long)
        return F.embedding_bag(empty, table, mode="sum").view(0, c, ph, pw)
    boxes = rois[:, 1:] * spatial_scale - (0.5 if aligned else 0.0)
    size = boxes[:, 2:] - boxes[:, :2]
    if not aligned:
        size = size.clamp(min=1.0)
    if sampling_ratio > 0:
        samples = torch.full(size.shape, sampling_ratio, dtype=torch.long)
    else:
        samples = torch.ceil(size / torch.tensor([pw, ph], dtype=size.dtype)).long()
    gx, gy = samples.clamp(min=1).max(0).values.tolist()
    if len(rois) * ph * pw * gx * gy * 4 > MAX_TERMS:
        return roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)
    y, wy = _axis(boxes[:, 1], size[:, 1], ph, samples[:, 1], gy, h)
    x, wx = _axis(boxes[:, 0], size[:, 0], pw, samples[:, 0], gx, w)
    y = y * w + (rois[:, 0].long() * (h * w))[:, None, None, None]
    # (R, ph, pw, sy, sx, 2, 2): every bin's samples and their 4 neighbours
    index = y[:, :, None, :, None, :, None] + x[:, None, :, None, :, None, :]
    weight = wy[:, :, None, :, None, :, None] * wx[:, None, :, None, :, None, :]
    # only the terms that count: the grid is padded to the largest ROI's samples per bin
    bags = len(rois) * ph * pw
    counted = (weight != 0).reshape(bags, -1)
    offsets = torch.zeros(bags, dtype=torch.long)
    torch.cumsum(counted.sum(1)[:-1], 0, out=offsets[1:])
    pooled = F.embedding_bag(
        index.reshape(bags, -1)[counted],
        table,
        offsets,
        mode="sum",
        per_sample_weights=weight.reshape(bags, -1)[counted],
    )
    return pooled.view(-1, ph, pw, c).permute(0, 3, 1, 2).contiguous()


class SpermROIAlign(ROIAlign):
    """detectron2's ``ROIAlign`` (same settings, no weights) with fp32 boxes under autocast and,
    on the CPU in training (features that need a gradient), :func:`roi_align_cpu` (see the
    module docstring)."""

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        assert rois.dim() == 2 and rois.size(1) == 5
        args = (self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)
        if input.device.type != "cpu":
            if torch.is_autocast_enabled(input.device.type):
                return roi_align(input, rois, *args)  # torchvision's autocast kernel: fp32 boxes
            return super().forward(input, rois)
        # torchvision's forward kernel is as fast at inference sizes; its backward is the slow part
        pool = roi_align_cpu if torch.is_grad_enabled() and input.requires_grad else roi_align
        with torch.autocast("cpu", enabled=False):
            out = pool(input.float(), rois.float(), *args)
        return out.to(input.dtype)


def use_sperm_roi_align(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (in place; returned) with every detectron2 ``ROIAlign`` replaced by a
    :class:`SpermROIAlign` of the same settings."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is ROIAlign:
                args = (child.output_size, child.spatial_scale, child.sampling_ratio)
                setattr(module, name, SpermROIAlign(*args, aligned=child.aligned))
    return model
