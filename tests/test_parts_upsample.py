"""The field segmenter's label map: the arg-max of bilinearly upsampled logits, interpolated only
where a pixel's sources disagree (sperm_d2.parts.upsample), equals the full path."""

import pytest
import torch
import torch.nn.functional as F

from sperm_d2.parts.upsample import source_index, upsampled_argmax


def _full(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _assert_same(logits: torch.Tensor, size: tuple[int, int]) -> None:
    full = _full(logits, size)
    got, want = upsampled_argmax(logits, size), full.argmax(1)
    assert got.shape == want.shape and got.dtype == torch.int64
    differ = got != want
    if differ.any():  # only float-rounding ties between the two computations
        top2 = full.topk(2, dim=1).values
        assert (top2[:, 0] - top2[:, 1])[differ].max() < 1e-5


@pytest.mark.parametrize(
    "low, size",
    [((32, 40), (64, 80)), ((16, 21), (33, 41)), ((20, 30), (61, 89)), ((25, 25), (25, 25)),
     ((9, 14), (8, 11)), ((1, 7), (3, 20))],
)  # fmt: skip
def test_equal_to_the_full_resize_on_smooth_logits(low, size) -> None:
    """Blobs of classes (most output pixels have agreeing sources), odd sizes, scales not 2,
    a single row and a shrink."""
    torch.manual_seed(0)
    coarse = torch.randn(2, 6, max(1, low[0] // 4), max(1, low[1] // 4)) * 3
    logits = _full(coarse, low)
    _assert_same(logits, size)


def test_equal_to_the_full_resize_where_every_pixel_disagrees() -> None:
    """Noise: every output pixel is interpolated, with PyTorch's weights per axis (a
    non-square field catches rows and columns swapped)."""
    torch.manual_seed(1)
    _assert_same(torch.randn(1, 5, 13, 29), (31, 67))


def test_source_index_matches_pytorch_for_one_axis() -> None:
    """Resizing a ramp along one axis reproduces PyTorch's interpolated values."""
    for n_in, n_out in ((5, 12), (12, 5), (7, 7), (10, 21)):
        ramp = torch.arange(n_in, dtype=torch.float32) ** 2
        i0, i1, w = source_index(n_out, n_in)
        ours = ramp[i0] * (1 - w) + ramp[i1] * w
        theirs = _full(ramp.view(1, 1, 1, -1), (1, n_out)).flatten()
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_many_classes_take_the_full_resize() -> None:
    torch.manual_seed(2)
    _assert_same(torch.randn(1, 130, 6, 7), (12, 15))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_the_indices_live_beside_the_logits() -> None:
    torch.manual_seed(3)
    logits = torch.randn(1, 6, 20, 31, device="cuda")
    got = upsampled_argmax(logits, (41, 63))
    assert got.device.type == "cuda"
    assert torch.equal(got.cpu(), upsampled_argmax(logits.cpu(), (41, 63)))
