"""The canonical head crop: orientation, scale, centring, mirror invariance, awkward cases."""

import cv2
import numpy as np
import pytest

from sperm_d2.grading.crop import canonical_crop, head_frame, input_channels, model_input

from .conftest import REPO


def ellipse_mask(h=128, w=128, centre=(64, 64), axes=(24, 10), angle=30.0) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, centre, axes, angle, 0, 360, 1, -1)
    return m.astype(bool)


def extent(mask: np.ndarray) -> tuple[int, int]:
    """(width, height) of the mask's bounding box in pixels."""
    ys, xs = np.nonzero(mask > 127)
    return int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0])
def test_long_axis_becomes_horizontal_and_fills_the_fraction(angle) -> None:
    image = np.full((128, 128, 3), 200, np.uint8)
    mask = ellipse_mask(angle=angle)
    crop = canonical_crop(image, mask, size=64, head_fraction=0.6)
    width, height = extent(crop.mask)
    assert width > 2 * height  # 48 x 20 ellipse: the long axis lies along x
    assert abs(width - 0.6 * 64) <= 2  # the long axis spans 60 % of the side
    ys, xs = np.nonzero(crop.mask > 127)
    assert abs(xs.mean() - 31.5) < 1.5 and abs(ys.mean() - 31.5) < 1.5  # centred
    assert not crop.degenerate and not crop.touches_border


def test_scale_follows_the_head_not_the_image() -> None:
    small = canonical_crop(np.zeros((128, 128, 3), np.uint8), ellipse_mask(axes=(12, 5)), 64)
    big = canonical_crop(np.zeros((128, 128, 3), np.uint8), ellipse_mask(axes=(36, 15)), 64)
    assert abs(extent(small.mask)[0] - extent(big.mask)[0]) <= 2
    assert small.scale > 2.5 * big.scale


def test_mirror_images_give_the_same_crop() -> None:
    # an asymmetric "head": a disc with a tail on one side
    mask = ellipse_mask(axes=(20, 12), angle=20.0)
    cv2.line(mask.view(np.uint8), (64, 64), (100, 80), 1, 3)
    image = np.dstack([mask.astype(np.uint8) * 255] * 3)
    a = canonical_crop(image, mask, 64)
    b = canonical_crop(image[:, ::-1].copy(), mask[:, ::-1].copy(), 64)
    c = canonical_crop(image[::-1].copy(), mask[::-1].copy(), 64)
    for other in (b, c):
        assert np.mean(np.abs(a.mask.astype(int) - other.mask.astype(int))) < 8


def test_head_touching_the_border_is_defined() -> None:
    image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    mask = ellipse_mask(96, 96, centre=(2, 50), axes=(20, 8), angle=0.0)
    crop = canonical_crop(image, mask, 64)
    assert crop.touches_border
    assert crop.image.shape == (64, 64, 3) and crop.mask.shape == (64, 64)
    assert crop.mask.max() == 255


@pytest.mark.parametrize("pixels", [0, 1, 2])
def test_degenerate_masks_give_a_defined_crop(pixels) -> None:
    image = np.full((50, 80, 3), 90, np.uint8)
    mask = np.zeros((50, 80), bool)
    mask[10, 10 : 10 + pixels] = True
    crop = canonical_crop(image, mask, 32)
    assert crop.degenerate
    assert crop.image.shape == (32, 32, 3) and np.isfinite(crop.matrix).all()
    assert crop.scale <= 32 / 80 + 1e-9


def test_tiny_head_is_upscaled_at_most_max_scale() -> None:
    mask = np.zeros((40, 40), bool)
    mask[20:22, 18:22] = True  # 4 x 2 px
    matrix, _, scale, degenerate = head_frame(mask, 64, 0.6, max_scale=4.0)
    assert not degenerate and scale == 4.0


def test_mask_and_image_must_match() -> None:
    with pytest.raises(ValueError, match="mask"):
        canonical_crop(np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10), bool))


def test_model_input_modes() -> None:
    image = np.full((64, 64, 3), 200, np.uint8)
    crop = canonical_crop(image, ellipse_mask(64, 64, (32, 32), (12, 6)), 32)
    assert model_input(crop, "channel").shape == (32, 32, input_channels("channel")) == (32, 32, 4)
    suppressed = model_input(crop, "suppress")
    assert suppressed.shape == (32, 32, 3) and suppressed[0, 0, 0] == 128  # background greyed
    assert model_input(crop, "none").shape == (32, 32, 3)
    with pytest.raises(ValueError, match="MASK_MODE"):
        model_input(crop, "alpha")


def test_fixed_scale_keeps_the_head_size() -> None:
    image = np.zeros((128, 128, 3), np.uint8)
    small = canonical_crop(image, ellipse_mask(axes=(12, 5)), 64, fixed_scale=1.0)
    big = canonical_crop(image, ellipse_mask(axes=(24, 10)), 64, fixed_scale=1.0)
    assert small.scale == big.scale == 1.0
    assert abs(extent(big.mask)[0] - 2 * extent(small.mask)[0]) <= 2


def test_tta_views_average_the_flipped_crops() -> None:
    import torch

    from sperm_d2.config import setup_cfg
    from sperm_d2.grading.model import SpermHeadGrader

    cfg = setup_cfg(str(REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml"))
    model = SpermHeadGrader(cfg).eval()
    x = torch.randint(0, 255, (3, 4, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        model.tta = "rot180"
        both = model.probabilities(x)
        one = torch.softmax(model.logits(x), 1)
        turned = torch.softmax(model.logits(x.flip(2, 3)), 1)
        model.tta = "none"
        assert torch.allclose(model.probabilities(x), one)
    assert torch.allclose(both, (one + turned) / 2, atol=1e-6)


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0])
def test_the_unaligned_view_keeps_the_head_as_it_lies(angle) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    mask = ellipse_mask(centre=(70, 58), angle=angle)
    crop = canonical_crop(image, mask, size=64, head_fraction=0.6, align=False)
    assert crop.angle_degrees == 0.0 and not crop.degenerate
    # the frame is a pure scale + shift: no rotation, no reflection
    assert crop.matrix[0, 1] == crop.matrix[1, 0] == 0.0 and crop.matrix[0, 0] == crop.scale > 0
    ys, xs = np.nonzero(mask)
    box = max(np.ptp(xs), np.ptp(ys)) + 1
    assert crop.scale == pytest.approx(0.6 * 64 / box)
    # the mask's bounding box is centred and its longer side spans the fraction
    width, height = extent(crop.mask)
    assert abs(max(width, height) - 0.6 * 64) <= 2
    cys, cxs = np.nonzero(crop.mask > 127)
    assert (
        abs((cxs.min() + cxs.max()) / 2 - 31.5) <= 1
        and abs((cys.min() + cys.max()) / 2 - 31.5) <= 1
    )
    # on a horizontal ramp the crop is a horizontal ramp again: nothing turned or mirrored
    ramp = np.repeat(np.repeat(np.arange(128, dtype=np.uint8)[None, :, None], 128, 0), 3, 2)
    flat = canonical_crop(ramp, mask, size=64, head_fraction=0.6, align=False).image[..., 0]
    inner = flat[8:-8, 8:-8].astype(float)
    assert np.ptp(inner, axis=0).max() <= 1 and (np.diff(inner, axis=1) >= 0).all()
    if angle != 0.0:  # the aligned view rotates the same head
        assert canonical_crop(image, mask, size=64).angle_degrees != 0.0
