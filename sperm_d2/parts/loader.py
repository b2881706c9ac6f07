"""The part segmenter's data: random training windows at native scale, whole fields for tests.

Training: an endless stream of batches of ``SOLVER.IMS_PER_BATCH`` windows, each from a field of
``DATASETS.TRAIN`` decoded and rasterised when drawn and kept in a cache of at most
:data:`CACHED_FIELDS` fields (~5 MB each with its label map): a small set is held whole, as
before, a large one costs bounded memory (reading a field costs ~70 ms, half a training step
when every window read its field anew). Each
window of ``SPERM.PARTS.WINDOW`` px is centred on an annotated part with probability
``SPERM.PARTS.FOCUS_PROB``, flipped, turned by quarter turns (``SPERM.AUG.ROT90``) and jittered
in brightness and contrast (``SPERM.AUG``). Test: each field whole, one per batch, each process
taking its own shard.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.utils import comm

from sperm_d2.data import load_registered
from sperm_d2.errors import InputError
from sperm_d2.image_io import read_image
from sperm_d2.parts.targets import label_map

logger = logging.getLogger(__name__)


def load_field(record: dict, class_names) -> tuple[np.ndarray, np.ndarray]:
    """A dataset record's (H, W, 3) BGR image and (H, W) uint8 label map; an ``InputError``
    names an unreadable image."""
    image, reason = read_image(record["file_name"])
    if image is None:
        raise InputError(f"{record['file_name']}: {reason}")
    h, w = image.shape[:2]
    return image, label_map(record.get("annotations", []), class_names, h, w)


def _window(size: int, extent: int, centre: int | None, rng: np.random.Generator) -> int:
    """Start of a window of ``size`` inside ``extent`` (around ``centre`` when given)."""
    if extent <= size:
        return 0
    start = rng.integers(0, extent - size + 1) if centre is None else centre - size // 2
    return int(np.clip(start, 0, extent - size))


def cut_window(
    image: np.ndarray, labels: np.ndarray, size: int, focus: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` window of a field and its labels (padded with 0 where the field is
    smaller), centred on a random labelled pixel when ``focus`` (and the field has one)."""
    h, w = labels.shape
    cy = cx = None
    if focus:
        ys, xs = np.nonzero(labels[::4, ::4])  # a coarse grid is enough to pick a centre
        if len(ys):
            k = rng.integers(len(ys))
            cy, cx = int(ys[k]) * 4, int(xs[k]) * 4
    y0, x0 = _window(size, h, cy, rng), _window(size, w, cx, rng)
    img = np.zeros((size, size, 3), np.uint8)
    lab = np.zeros((size, size), np.uint8)
    crop_i, crop_l = image[y0 : y0 + size, x0 : x0 + size], labels[y0 : y0 + size, x0 : x0 + size]
    img[: crop_i.shape[0], : crop_i.shape[1]] = crop_i
    lab[: crop_l.shape[0], : crop_l.shape[1]] = crop_l
    return img, lab


def augment(
    img: np.ndarray, lab: np.ndarray, cfg: CfgNode, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random flips, quarter turns (``SPERM.AUG.ROT90``) and brightness/contrast jitter."""
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    if rng.random() < cfg.SPERM.AUG.VFLIP_PROB:
        img, lab = img[::-1], lab[::-1]
    if cfg.SPERM.AUG.ROT90:
        k = int(rng.integers(4))
        img, lab = np.rot90(img, k), np.rot90(lab, k)
    return jitter_colour(img, cfg, rng), np.ascontiguousarray(lab)


def jitter_colour(img: np.ndarray, cfg: CfgNode, rng: np.random.Generator) -> np.ndarray:
    """float32 ``img`` with its brightness and contrast jittered (``SPERM.AUG``)."""
    x = img.astype(np.float32)
    b = rng.uniform(*cfg.SPERM.AUG.BRIGHTNESS)
    c = rng.uniform(*cfg.SPERM.AUG.CONTRAST)
    if b != 1.0 or c != 1.0:
        mean = x.mean()
        x = np.clip((x - mean) * c + mean * b, 0, 255)
    return x


#: decoded fields (image + label map) the training loader keeps (least recently drawn dropped)
CACHED_FIELDS = 256


class PartTrainLoader:
    """Endless iterator of training batch dicts (see ``SpermPartSegmenter``)."""

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg
        classes = list(cfg.SPERM.CLASSES)
        self.records = [r for name in cfg.DATASETS.TRAIN for r in load_registered(name)]
        if not self.records:
            raise InputError(f"{', '.join(cfg.DATASETS.TRAIN)}: no fields to train on")
        self.classes = classes
        self.batch_size = max(1, cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size())
        self.rng = np.random.default_rng(np.random.randint(2**31))  # setup_run seeded numpy
        self.field = functools.lru_cache(maxsize=CACHED_FIELDS)(self._read_field)
        counts = np.zeros(len(classes) + 1, np.int64)
        for r in self.records:  # one field at a time: every image is checked readable up front
            counts += np.bincount(load_field(r, classes)[1].ravel(), minlength=len(counts))
        logger.info(
            "part training set: %d fields, pixel share per class %s",
            len(self.records),
            dict(zip(["background", *classes], np.round(counts / counts.sum(), 4).tolist())),
        )

    def _read_field(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return load_field(self.records[k], self.classes)

    def __iter__(self):
        size = int(self.cfg.SPERM.PARTS.WINDOW)
        focus = float(self.cfg.SPERM.PARTS.FOCUS_PROB)
        while True:
            images, targets = [], []
            for k in self.rng.integers(len(self.records), size=self.batch_size):
                image, labels = self.field(int(k))
                img, lab = cut_window(image, labels, size, self.rng.random() < focus, self.rng)
                img, lab = augment(img, lab, self.cfg, self.rng)
                images.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))))
                targets.append(torch.from_numpy(lab.astype(np.int64)))
            yield {"images": torch.stack(images), "targets": torch.stack(targets)}


class PartTestLoader:
    """This process's shard of a registered split, one whole field per batch (with its label
    map as ``targets`` and its record as ``record``); fields are read as they are reached."""

    def __init__(self, cfg: CfgNode, dataset_name: str) -> None:
        records = load_registered(dataset_name)
        self.records = records[comm.get_rank() :: comm.get_world_size()]
        self.classes = list(cfg.SPERM.CLASSES)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        for record in self.records:
            image, labels = load_field(record, self.classes)
            yield {
                "images": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None],
                "targets": torch.from_numpy(labels.astype(np.int64))[None],
                "record": record,
            }
