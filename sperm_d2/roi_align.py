"""ROI Align for the project's models: fp32 boxes under autocast, and on the CPU one image per
thread.

Two things detectron2's ``ROIAlign`` (torchvision's ``roi_align``) does that cost us:

* It casts the ROI boxes to the features' dtype. Under bf16 autocast that rounds box coordinates
  to bf16's 8 significant bits: 2-px steps between 256 and 512 px, 1-px steps between 128 and
  256, a real shift for ~35-px heads. Here the boxes stay fp32 and the features are pooled in
  fp32, as torchvision's own autocast kernel does; the result comes back in the features' dtype.
* torchvision's CPU kernels run on one thread, whatever ``torch.get_num_threads()`` says, and
  the backward kernel recomputes every sample's bilinear weights for every channel. At the 2021
  study's setting (R-101-FPN, 512 px, batch 4, 512 ROIs per image) ROI Align's forward and
  backward took 5.6 of a 15 s training step's CPU seconds, all of it on one core while the
  other waited (``torch.profiler``, GN scratch config, bf16). The ROIs of one image read and
  write only that image's features, so here each image's ROIs go through torchvision's own
  kernels on a thread of their own (the kernels release the GIL): the same numbers bit for bit
  (each image's kernel call is the one a batch of one would make), at up to one core per image.

On other devices (CUDA) it is detectron2's ``ROIAlign`` as before, with fp32 boxes under autocast.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from detectron2.layers import ROIAlign
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    """One pool per worker count, kept for the process's life (threads idle between calls)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="roi_align")


def _map(fn, items: list) -> list:
    """``fn`` over ``items``: on up to ``torch.get_num_threads()`` threads, or in this thread."""
    workers = min(len(items), torch.get_num_threads())
    if workers <= 1:
        return [fn(x) for x in items]
    return list(_pool(workers).map(fn, items))


def _by_image(rois: torch.Tensor, num_images: int) -> tuple[torch.Tensor | None, list]:
    """(order, per-image boxes): ``order`` sorts ``rois`` by image (None if they already are,
    as detectron2's poolers hand them over); each image's boxes with batch index 0."""
    index = rois[:, 0].long()
    order = None
    if index.numel() > 1 and not bool((index[1:] >= index[:-1]).all()):
        order = torch.argsort(index, stable=True)
        rois, index = rois[order], index[order]
    counts = torch.bincount(index, minlength=num_images).tolist()
    boxes = [torch.nn.functional.pad(r[:, 1:], (1, 0)) for r in rois.split(counts)]
    return order, boxes


class _ROIAlignByImage(torch.autograd.Function):
    """torchvision's CPU ``roi_align`` forward and backward, one image's ROIs per call, the calls
    spread over threads."""

    @staticmethod
    def forward(ctx, input, rois, output_size, spatial_scale, sampling_ratio, aligned):
        n, c, h, w = input.shape
        order, boxes = _by_image(rois, n)
        ph, pw = _pair(output_size)
        args = (spatial_scale, ph, pw, sampling_ratio, aligned)
        op = torch.ops.torchvision.roi_align

        def one(i: int) -> torch.Tensor:
            return op(input[i : i + 1], boxes[i], *args)

        out = torch.cat(_map(one, range(n))) if n else input.new_zeros(0, c, ph, pw)
        if order is not None:
            out = torch.empty_like(out).index_copy_(0, order, out)
        ctx.save_for_backward(rois)
        ctx.meta = (input.shape, output_size, spatial_scale, sampling_ratio, aligned)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        (n, c, h, w), output_size, spatial_scale, sampling_ratio, aligned = ctx.meta
        ph, pw = _pair(output_size)
        order, boxes = _by_image(rois, n)
        if order is not None:
            grad_output = grad_output[order]
        grads = grad_output.split([len(b) for b in boxes])
        op = torch.ops.torchvision._roi_align_backward

        def one(i: int) -> torch.Tensor:
            if not len(boxes[i]):
                return grad_output.new_zeros(1, c, h, w)
            args = (spatial_scale, ph, pw, 1, c, h, w, sampling_ratio, aligned)
            return op(grads[i].contiguous(), boxes[i], *args)

        return torch.cat(_map(one, range(n))), None, None, None, None, None


class SpermROIAlign(ROIAlign):
    """detectron2's ``ROIAlign`` (same settings, no weights) with fp32 boxes under autocast and,
    on the CPU, one image per thread (see the module docstring)."""

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        assert rois.dim() == 2 and rois.size(1) == 5
        args = (self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)
        if input.device.type != "cpu":
            if torch.is_autocast_enabled(input.device.type):
                return roi_align(input, rois, *args)  # torchvision's autocast kernel: fp32 boxes
            return super().forward(input, rois)
        with torch.autocast("cpu", enabled=False):
            out = _ROIAlignByImage.apply(input.float(), rois.float(), *args)
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
