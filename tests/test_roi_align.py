"""sperm_d2.roi_align: fp32 boxes under bf16 autocast, and one image per thread on the CPU giving
torchvision's numbers bit for bit (forward and backward)."""

import pytest
import torch
from detectron2.layers import ROIAlign
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torchvision.ops import roi_align

from sperm_d2.roi_align import SpermROIAlign, use_sperm_roi_align


def _rois(images: list[int], per_image: int = 30, seed: int = 0) -> torch.Tensor:
    """Random boxes (batch index first) in the order of ``images``, up to 160 px."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for i in images:
        xy = torch.rand(per_image, 2, generator=g) * 120
        wh = torch.rand(per_image, 2, generator=g) * 70 + 1
        parts.append(torch.cat([torch.full((per_image, 1), float(i)), xy, xy + wh], 1))
    return torch.cat(parts)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_by_image_equals_torchvision_bit_for_bit(threads, sampling_ratio, channels_last):
    # boxes out of image order, image 1 without any, image 3 twice
    rois = _rois([3, 0, 2, 3])
    features = torch.randn(4, 16, 40, 48)
    ours = features.contiguous(memory_format=torch.channels_last) if channels_last else features
    a, b = features.clone().requires_grad_(), ours.clone().requires_grad_()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        expected = roi_align(a, rois, (7, 7), 0.25, sampling_ratio, True)
        got = SpermROIAlign((7, 7), 0.25, sampling_ratio, True)(b, rois)
        grad = torch.randn_like(expected)
        expected.backward(grad)
        got.backward(grad)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got, expected)
    assert torch.equal(b.grad, a.grad)
    assert b.grad[1].abs().max() == 0  # no box on image 1
    assert b.grad[3].abs().max() > 0


def test_no_boxes():
    features = torch.randn(2, 8, 16, 16, requires_grad=True)
    out = SpermROIAlign((7, 7), 0.25, 0, True)(features, torch.zeros(0, 5))
    assert out.shape == (0, 8, 7, 7)
    out.sum().backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_roi_boxes_stay_fp32_under_autocast():
    pooler = ROIPooler((7, 7), (1 / 4, 1 / 8), sampling_ratio=0, pooler_type="ROIAlignV2")
    fixed = use_sperm_roi_align(ROIPooler((7, 7), (1 / 4, 1 / 8), 0, "ROIAlignV2"))
    assert all(type(p) is ROIAlign for p in pooler.level_poolers)
    assert all(type(p) is SpermROIAlign for p in fixed.level_poolers)
    torch.manual_seed(0)
    features = [torch.randn(1, 8, 128, 128), torch.randn(1, 8, 64, 64)]
    # a 40-px box at 300-340 px: bf16 keeps 8 significant bits, i.e. 2-px steps up there
    boxes = [Boxes(torch.tensor([[301.3, 299.7, 339.1, 341.9]]))]
    exact = pooler(features, boxes)
    assert torch.equal(fixed(features, boxes), exact)  # fp32: unchanged
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = [f.bfloat16() for f in features]
        rounded, kept = pooler(low, boxes), fixed(low, boxes)
    assert kept.dtype == torch.bfloat16  # the features' dtype, as torchvision's autocast kernel
    # pooled at the exact box (within bf16 feature rounding), not at the rounded one
    reference = pooler([f.float() for f in low], boxes)
    error = (kept.float() - reference).abs().max()
    assert error < 0.02
    assert (rounded.float() - reference).abs().max() > 5 * error


def test_backward_under_autocast_reaches_bf16_features():
    features = torch.randn(2, 8, 32, 32).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = SpermROIAlign((7, 7), 0.25, 0, True)(features, _rois([0, 1], 5))
    out.float().sum().backward()
    assert features.grad.dtype == torch.bfloat16 and features.grad.abs().sum() > 0
