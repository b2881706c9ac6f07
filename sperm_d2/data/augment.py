"""Online training augmentation: detectron2's resize/flip plus the ``SPERM.AUG`` extras.

Every augmentation here is a detectron2 ``T.Augmentation`` whose transforms map coordinates as
well as pixels, so polygons, boxes and masks follow the image. Photometric ones leave coordinates
alone (``T.ColorTransform``); the 90-degree rotation is exact (``np.rot90``, no interpolation).
"""

from __future__ import annotations

import numpy as np
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from sperm_d2.data.imageops import rot90_coords, shift_hue


class Rot90Transform(T.Transform):
    """Rotate by ``k`` quarter turns counter-clockwise (as ``np.rot90``), image ``h`` x ``w``."""

    def __init__(self, h: int, w: int, k: int):
        super().__init__()
        self._set_attributes(locals())
        self.k = k % 4

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(img, self.k, axes=(0, 1)))

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return rot90_coords(coords, self.h, self.w, self.k)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation)

    def inverse(self) -> T.Transform:
        h, w = (self.w, self.h) if self.k % 2 else (self.h, self.w)
        return Rot90Transform(h, w, -self.k)


class RandomRot90(T.Augmentation):
    """Rotate by a uniformly random multiple of 90 degrees."""

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        return Rot90Transform(h, w, int(np.random.randint(4)))


class _HueShift:
    """Picklable callable for ``T.ColorTransform`` (data loader workers may pickle transforms)."""

    def __init__(self, degrees: float, fmt: str):
        self.degrees, self.fmt = degrees, fmt

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return shift_hue(image, self.degrees, self.fmt)


class RandomHue(T.Augmentation):
    """Shift the hue by a uniform random angle in ``[-max_degrees, max_degrees]``."""

    def __init__(self, max_degrees: float, image_format: str = "BGR"):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        if image.ndim != 3 or image.shape[2] != 3 or self.image_format not in ("BGR", "RGB"):
            return T.NoOpTransform()
        deg = float(np.random.uniform(-self.max_degrees, self.max_degrees))
        return T.ColorTransform(_HueShift(deg, self.image_format))


def _active(rng) -> bool:
    lo, hi = float(rng[0]), float(rng[1])
    return not (lo == 1.0 and hi == 1.0)


def build_train_augmentation(cfg) -> list[T.Augmentation]:
    """detectron2's ``build_augmentation(cfg, True)`` after its ``INPUT.CROP`` window (as its own
    ``DatasetMapper`` would insert it), then the enabled ``SPERM.AUG`` extras."""
    augs = utils.build_augmentation(cfg, True)
    if cfg.INPUT.CROP.ENABLED:  # full fields: train on windows at native scale
        augs.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    aug = cfg.SPERM.AUG
    if aug.VFLIP_PROB > 0 and cfg.INPUT.RANDOM_FLIP != "vertical":
        augs.append(T.RandomFlip(prob=aug.VFLIP_PROB, horizontal=False, vertical=True))
    if aug.ROT90:
        augs.append(RandomRot90())
    if _active(aug.BRIGHTNESS):
        augs.append(T.RandomBrightness(*aug.BRIGHTNESS))
    if _active(aug.CONTRAST):
        augs.append(T.RandomContrast(*aug.CONTRAST))
    if _active(aug.SATURATION):
        augs.append(T.RandomSaturation(*aug.SATURATION))
    if aug.HUE_DEGREES > 0:
        augs.append(RandomHue(aug.HUE_DEGREES, cfg.INPUT.FORMAT))
    return augs
