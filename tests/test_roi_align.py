"""sperm_d2.roi_align: fp32 boxes under bf16 autocast, and the CPU formulation giving torchvision's
numbers (forward and backward) up to float rounding."""

import pytest
import torch
from detectron2.layers import ROIAlign
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torchvision.ops import roi_align

from sperm_d2.roi_align import SpermROIAlign, roi_align_cpu, use_sperm_roi_align


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
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_torchvision(threads, sampling_ratio, aligned, channels_last):
    # boxes out of image order, image 1 without any, image 3 twice; boxes cross every border
    rois = _rois([3, 0, 2, 3])
    rois[0, 3:] = rois[0, 1:3]  # an empty box
    rois[1, 1:] = torch.tensor([-30.0, -20.0, 250.0, 300.0])  # beyond the image on all sides
    features = torch.randn(4, 16, 40, 48)
    ours = features.contiguous(memory_format=torch.channels_last) if channels_last else features
    a, b = features.clone().requires_grad_(), ours.clone().requires_grad_()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        expected = roi_align(a, rois, (7, 5), 0.25, sampling_ratio, aligned)
        got = SpermROIAlign((7, 5), 0.25, sampling_ratio, aligned)(b, rois)
        grad = torch.randn_like(expected)
        expected.backward(grad)
        got.backward(grad)
    finally:
        torch.set_num_threads(before)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5)
    assert b.grad[1].abs().max() == 0  # no box on image 1
    assert b.grad[3].abs().max() > 0


def test_adaptive_samples_differ_per_box():
    """Boxes needing 1, 3 and 9 samples per bin side in one call (the grid is padded to the
    largest; the padding must weigh nothing)."""
    features = torch.randn(1, 8, 64, 64, requires_grad=True)
    rois = torch.tensor(
        [[0, 4.0, 4.0, 20.0, 20.0], [0, 10.0, 12.0, 90.0, 70.0], [0, 0, 0, 250, 240]]
    )
    expected = roi_align(features, rois, (7, 7), 0.25, 0, True)
    torch.testing.assert_close(roi_align_cpu(features, rois, (7, 7), 0.25, 0, True), expected)


def test_too_many_terms_fall_back_to_torchvision(monkeypatch):
    from sperm_d2 import roi_align as module

    monkeypatch.setattr(module, "MAX_TERMS", 100)
    features, rois = torch.randn(2, 8, 32, 32, requires_grad=True), _rois([1, 0], 6)
    expected = roi_align(features, rois, (7, 7), 0.25, 0, True)
    assert torch.equal(roi_align_cpu(features, rois, (7, 7), 0.25, 0, True), expected)


def test_inference_is_torchvisions_kernel():
    features, rois = torch.randn(2, 8, 32, 32), _rois([1, 0], 6)
    expected = roi_align(features, rois, (7, 7), 0.25, 0, True)
    assert torch.equal(SpermROIAlign((7, 7), 0.25, 0, True)(features, rois), expected)
    with torch.no_grad():
        got = SpermROIAlign((7, 7), 0.25, 0, True)(features.requires_grad_(), rois)
    assert torch.equal(got, expected)


def test_no_boxes():
    features = torch.randn(2, 8, 16, 16, requires_grad=True)
    out = roi_align_cpu(features, torch.zeros(0, 5), (7, 7), 0.25, 0, True)
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
    torch.testing.assert_close(fixed(features, boxes), exact)  # fp32: the same numbers
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
