"""The arg-max of bilinearly upsampled logits without upsampling them everywhere.

The field segmenter sees a field at ``SPERM.PARTS.SCALE`` and its labels are the arg-max of its
logits resized back to the field's size (bilinear, ``align_corners=False``). Bilinear weights are
convex: where the (up to) four low-resolution pixels an output pixel is interpolated from share
their arg-max class, the interpolated logits keep that class ahead of every other (each
difference ``logit_c - logit_k`` stays positive under a convex combination), so the output pixel
takes it without any interpolation. Only the output pixels whose sources disagree, the thin bands
along part boundaries, are interpolated, with the weights ``torch.nn.functional.interpolate``
uses. Equal to the full path up to float rounding on exact ties; a constant per-class bias
commutes with the interpolation, so it is added to the low-resolution logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def source_index(
    n_out: int, n_in: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(first source index, second source index, weight of the second) of each of ``n_out``
    output positions resized from ``n_in``, on ``device``: PyTorch's bilinear rule with
    ``align_corners=False`` and a target size (scale ``n_in / n_out``, source clamped at 0 and at
    the last pixel)."""
    scale = n_in / n_out
    positions = torch.arange(n_out, dtype=torch.float32, device=device)
    src = ((positions + 0.5) * scale - 0.5).clamp(min=0.0)
    i0 = src.long()  # src >= 0: truncation is the floor
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, src - i0


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) int64 arg-max over classes of ``logits`` (N, K, h, w) resized to ``size``
    (H, W) bilinearly (``align_corners=False``), interpolating only where the sources of an
    output pixel disagree (module docstring)."""
    n, k, h_in, w_in = logits.shape
    if k > 128:  # the class and the disagreement flag share a byte below
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)
    y0, y1, wy = source_index(size[0], h_in, logits.device)
    x0, x1, wx = source_index(size[1], w_in, logits.device)
    low = logits.argmax(1).to(torch.uint8)
    # an output pixel's sources are the low pixel (y0, x0), its right, lower and lower-right
    # neighbours (the last row and column repeated: the clamp): whether those four agree is
    # known per low pixel, so only one byte per output pixel is gathered
    ext = torch.cat([low, low[:, -1:]], 1)
    ext = torch.cat([ext, ext[:, :, -1:]], 2)
    first = ext[:, :-1, :-1]
    agree = (first == ext[:, :-1, 1:]) & (first == ext[:, 1:, :-1]) & (first == ext[:, 1:, 1:])
    code = low | ((~agree).to(torch.uint8) << 7)
    code = code.index_select(1, y0).index_select(2, x0)  # (N, H, W)
    out = (code & 127).long()
    b, yy, xx = (code >= 128).nonzero(as_tuple=True)
    if len(b):
        pixels = logits.permute(0, 2, 3, 1)  # (N, h, w, K): a pixel's logits are one row

        def at(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
            return pixels[b, ys[yy], xs[xx]].float()

        fy, fx = wy[yy, None], wx[xx, None]
        top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
        bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
        out[b, yy, xx] = (top * (1 - fy) + bottom * fy).argmax(1)
    return out
