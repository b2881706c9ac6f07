"""Online augmentation: the list follows the config, and polygons move exactly with the image."""

import cv2
import numpy as np
import pytest
from detectron2.data import transforms as T

from sperm_d2.config import get_sperm_cfg
from sperm_d2.data.augment import RandomHue, RandomRot90, Rot90Transform, build_train_augmentation


def _cfg(**aug):
    cfg = get_sperm_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (80,), 200
    for k, v in aug.items():
        setattr(cfg.SPERM.AUG, k, v)
    return cfg


def test_defaults_are_detectron2_only() -> None:
    augs = build_train_augmentation(_cfg())
    assert [type(a) for a in augs] == [T.ResizeShortestEdge, T.RandomFlip]


def test_all_extras_enabled() -> None:
    cfg = _cfg(
        VFLIP_PROB=0.5,
        ROT90=True,
        BRIGHTNESS=[0.8, 1.2],
        CONTRAST=[0.8, 1.2],
        SATURATION=[0.7, 1.3],
        HUE_DEGREES=10.0,
    )
    types = [type(a) for a in build_train_augmentation(cfg)]
    assert types == [
        T.ResizeShortestEdge,
        T.RandomFlip,
        T.RandomFlip,
        RandomRot90,
        T.RandomBrightness,
        T.RandomContrast,
        T.RandomSaturation,
        RandomHue,
    ]


def _raster(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round((poly - 0.5) * 16).astype(np.int32)], 1, shift=4)
    return m.astype(bool)


@pytest.mark.parametrize("seed", range(6))
def test_polygons_follow_the_image(seed) -> None:
    np.random.seed(seed)
    h, w = 60, 90  # not square: a wrong rot90 coordinate map would show
    poly = np.array([[10, 8], [40, 12], [35, 40], [15, 30]], dtype=float)
    image = np.full((h, w, 3), 200, np.uint8)
    mask = _raster(poly, h, w)
    image[mask] = (120, 40, 90)
    cfg = _cfg(VFLIP_PROB=0.5, ROT90=True, BRIGHTNESS=[0.8, 1.2], HUE_DEGREES=15.0)
    aug_in = T.AugInput(image, sem_seg=mask.astype(np.uint8))
    tfms = T.AugmentationList(build_train_augmentation(cfg))(aug_in)
    new_poly = tfms.apply_polygons([poly])[0]
    hh, ww = aug_in.image.shape[:2]
    got = _raster(new_poly, hh, ww)
    want = aug_in.sem_seg.astype(bool)
    assert (got & want).sum() / (got | want).sum() > 0.9


def test_rot90_is_exact_and_invertible() -> None:
    img = np.arange(12).reshape(3, 4)
    for k in range(4):
        t = Rot90Transform(3, 4, k)
        assert np.array_equal(t.inverse().apply_image(t.apply_image(img)), img)
        pts = np.array([[0.5, 0.5], [3.5, 2.5]])
        out = t.apply_coords(pts)
        rotated = t.apply_image(img)
        for (x, y), (nx, ny) in zip(pts, out):
            assert rotated[int(ny), int(nx)] == img[int(y), int(x)]
