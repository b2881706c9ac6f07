#!/usr/bin/env python
"""ROI Align on the CPU: torchvision's kernels vs ``sperm_d2.roi_align.roi_align_cpu`` (the
training path of the project's models), forward and forward + backward, alternated in this
process; prints the ratios and the largest difference of the outputs and of the gradients.

Shapes (one FPN level each, random boxes of the sizes that level gets, 2-sample adaptive grid):

* ``real``: the real-data R-18 config's box pooler, 4 images x 64 sampled ROIs on the p2 map of
  a 192 x 256 input (48 x 64, 128 channels);
* ``study``: the 2021 study's setting, 4 images x 512 ROIs on the p2 map of 512 px (128 x 128,
  256 channels).

Usage:
    python benchmarks/bench_roi_align.py --repeats 5
"""

import argparse
import statistics
import time

import sperm_d2.cli_warnings  # noqa: F401 isort: skip (first: hides known-harmless warnings)

import torch
from torchvision.ops import roi_align

from sperm_d2.roi_align import roi_align_cpu

#: name -> (images, ROIs per image, feature height, width, channels)
SHAPES = {"real": (4, 64, 48, 64, 128), "study": (4, 512, 128, 128, 256)}
ARGS = ((7, 7), 0.25, 0, True)  # detectron2's box pooler at p2: ROIAlignV2, adaptive samples


def boxes(images: int, per_image: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(images * per_image, 5) boxes of 8-56 px in image coordinates (p2's share of an FPN)."""
    g = torch.Generator().manual_seed(seed)
    size = torch.rand(images * per_image, 2, generator=g) * 48 + 8
    corner = torch.rand(images * per_image, 2, generator=g) * (
        torch.tensor([width * 4.0, height * 4.0]) - size
    )
    index = torch.arange(images).repeat_interleave(per_image)[:, None].float()
    return torch.cat([index, corner, corner + size], 1)


def timed(pool, features: torch.Tensor, rois: torch.Tensor, backward: bool) -> float:
    start = time.perf_counter()
    out = pool(features, rois, *ARGS)
    if backward:
        out.backward(torch.ones_like(out))
    return time.perf_counter() - start


def main(args: argparse.Namespace) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (n, r, h, w, c) in SHAPES.items():
        rois = boxes(n, r, h, w)
        features = torch.randn(n, c, h, w)
        a, b = features.clone().requires_grad_(), features.clone().requires_grad_()
        ref, ours = roi_align(a, rois, *ARGS), roi_align_cpu(b, rois, *ARGS)
        grad = torch.randn_like(ref)
        ref.backward(grad)
        ours.backward(grad)
        out_diff, grad_diff = (ours - ref).abs().max().item(), (b.grad - a.grad).abs().max().item()
        times = {k: [] for k in ("tv fwd", "ours fwd", "tv fwd+bwd", "ours fwd+bwd")}
        for _ in range(args.repeats):
            for backward in (False, True):
                x = features.clone().requires_grad_(backward)
                suffix = " fwd+bwd" if backward else " fwd"
                times["tv" + suffix].append(timed(roi_align, x, rois, backward))
                times["ours" + suffix].append(timed(roi_align_cpu, x, rois, backward))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(
            f"{name}: {n} images x {r} ROIs, {c} x {h} x {w}: forward torchvision "
            f"{med['tv fwd']:.1f} ms, ours {med['ours fwd']:.1f} ms "
            f"({med['tv fwd'] / med['ours fwd']:.2f}x); forward + backward torchvision "
            f"{med['tv fwd+bwd']:.1f} ms, ours {med['ours fwd+bwd']:.1f} ms "
            f"({med['tv fwd+bwd'] / med['ours fwd+bwd']:.2f}x); max |difference| output "
            f"{out_diff:.1e}, gradient {grad_diff:.1e}"
        )


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=5, help="alternated runs of each (median)")
    return p


if __name__ == "__main__":
    main(get_parser().parse_args())
