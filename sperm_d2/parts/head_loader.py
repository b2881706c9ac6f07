"""The head-part segmenter's data (``SPERM.PARTS.INPUT "head"``): one crop per annotated head.

Every sperm of a split (the parts of one ``group_id``, :func:`sperm_d2.parts.targets.sperm_parts`)
with a head part becomes a :class:`~sperm_d2.parts.head_crop.HeadPatch`: its head mask
(acrosome + nucleus + vacuole) and their labels, cut to the head. Training draws heads at
random; each is cut through its canonical frame computed from its mask grown or shrunk by up to
``SPERM.PARTS.MASK_JITTER`` px (the frame and the 4th channel then come from an outline as
imprecise as a detector's, the target stays the annotator's), turned by up to
``SPERM.PARTS.ROTATE_DEGREES``, flipped along either axis, jittered in brightness and contrast.
Test: every head of the split in its canonical frame, ``SPERM.EVAL_BATCH_SIZE`` per batch. With
``SPERM.PARTS.NEGATIVES_RUN`` both also hold a detector's false heads as background-only crops
(:mod:`sperm_d2.parts.negatives`).
Fields are read when drawn, through a bounded cache, as in :mod:`sperm_d2.parts.loader`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.utils import comm

from sperm_d2.data import load_registered
from sperm_d2.errors import InputError
from sperm_d2.image_io import read_image
from sperm_d2.parts.head_crop import HeadPatch, crop_matrix, cut_head, head_patch, jitter_mask
from sperm_d2.parts.loader import CACHED_FIELDS, jitter_colour
from sperm_d2.parts.negatives import mine_negatives
from sperm_d2.parts.targets import HEAD_PARTS, sperm_parts

logger = logging.getLogger(__name__)


def read_field(record: dict) -> np.ndarray:
    """A record's BGR image; ``InputError`` names an unreadable one."""
    image, reason = read_image(record["file_name"])
    if image is None:
        raise InputError(f"{record['file_name']}: {reason}")
    return image


def record_heads(record: dict, class_names) -> list[HeadPatch]:
    """The annotated heads of a dataset record as patches with their part labels (0 background,
    1 + i for ``class_names[i]``, head parts only)."""
    h, w = int(record["height"]), int(record["width"])
    index = {name: i + 1 for i, name in enumerate(class_names)}
    out = []
    for parts in sperm_parts(record.get("annotations", []), class_names, h, w).values():
        head_names = [p for p in HEAD_PARTS if p in parts and p in index]
        if not head_names:
            continue
        labels = np.zeros((h, w), np.uint8)
        for name in head_names:  # sperm_parts has resolved overlaps: the masks are disjoint
            labels[parts[name]] = index[name]
        patch = head_patch(labels > 0, labels)
        if patch is not None:
            out.append(patch)
    return out


def _heads(cfg: CfgNode, records: list[dict], dataset: str, read) -> list[tuple[int, HeadPatch]]:
    """(record index, patch) of every annotated head of ``records``, and of the hard negatives
    of ``SPERM.PARTS.NEGATIVES_RUN`` when set, in record order."""
    classes = list(cfg.SPERM.CLASSES)
    heads = [(k, p) for k, r in enumerate(records) for p in record_heads(r, classes)]
    run = cfg.SPERM.PARTS.NEGATIVES_RUN
    if not run:
        return heads
    cache = Path(cfg.OUTPUT_DIR) / f"head_negatives_{dataset}_{comm.get_rank()}.npz"
    negatives = mine_negatives(run, records, classes, cache, read)
    return sorted(heads + negatives, key=lambda kp: kp[0])


def _batch(inputs: list[np.ndarray], labels: list[np.ndarray]) -> dict:
    return {
        "images": torch.from_numpy(np.stack([x.transpose(2, 0, 1) for x in inputs])),
        "targets": torch.from_numpy(np.stack(labels).astype(np.int64)),
    }


class HeadPartTrainLoader:
    """Endless iterator of training batch dicts of ``SOLVER.IMS_PER_BATCH`` head crops."""

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg
        self.classes = list(cfg.SPERM.CLASSES)
        self.records = [r for name in cfg.DATASETS.TRAIN for r in load_registered(name)]
        self.field = functools.lru_cache(maxsize=CACHED_FIELDS)(
            lambda k: read_field(self.records[k])
        )
        for k in range(len(self.records)):  # every image checked readable up front
            self.field(k)
        self.heads = _heads(cfg, self.records, "_".join(cfg.DATASETS.TRAIN), self.field)
        if not any(p.labels.any() for _, p in self.heads):
            raise InputError(
                f"{', '.join(cfg.DATASETS.TRAIN)}: no annotated head parts to train on"
            )
        self.batch_size = max(1, cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size())
        self.rng = np.random.default_rng(np.random.randint(2**31))  # setup_run seeded numpy
        negatives = sum(not p.labels.any() for _, p in self.heads)
        logger.info(
            "head part training set: %d heads and %d hard negatives in %d fields",
            len(self.heads) - negatives,
            negatives,
            len(self.records),
        )

    def sample(self, k: int, patch: HeadPatch) -> tuple[np.ndarray, np.ndarray]:
        """One augmented (input, labels) crop of head ``patch`` of field ``k``."""
        p, rng = self.cfg.SPERM.PARTS, self.rng
        size = int(p.CROP_SIZE)
        jitter = int(rng.integers(-p.MASK_JITTER, p.MASK_JITTER + 1)) if p.MASK_JITTER else 0
        seen = HeadPatch(patch.x0, patch.y0, jitter_mask(patch.mask, jitter), patch.labels)
        turn = float(rng.uniform(-p.ROTATE_DEGREES, p.ROTATE_DEGREES))
        matrix = crop_matrix(seen.mask, size, float(p.HEAD_FRACTION), turn)
        x, lab = cut_head(self.field(k), seen, matrix, size)
        if rng.random() < 0.5:  # the canonical frame's directions come from the mask's skew
            x, lab = x[:, ::-1], lab[:, ::-1]
        if rng.random() < 0.5:
            x, lab = x[::-1], lab[::-1]
        x = np.dstack([jitter_colour(x[..., :3], self.cfg, rng), x[..., 3]])
        return x, np.ascontiguousarray(lab)

    def __iter__(self):
        while True:
            inputs, labels = [], []
            for j in self.rng.integers(len(self.heads), size=self.batch_size):
                x, lab = self.sample(*self.heads[int(j)])
                inputs.append(x)
                labels.append(lab)
            yield _batch(inputs, labels)


class HeadPartTestLoader:
    """This process's shard of a split's fields; every head of them in its canonical frame
    (from its annotated mask), ``SPERM.EVAL_BATCH_SIZE`` crops per batch."""

    def __init__(self, cfg: CfgNode, dataset_name: str) -> None:
        records = load_registered(dataset_name)
        self.records = records[comm.get_rank() :: comm.get_world_size()]
        self.classes = list(cfg.SPERM.CLASSES)
        self.size = int(cfg.SPERM.PARTS.CROP_SIZE)
        self.fraction = float(cfg.SPERM.PARTS.HEAD_FRACTION)
        self.batch_size = max(1, int(cfg.SPERM.EVAL_BATCH_SIZE))
        self.heads = _heads(cfg, self.records, dataset_name, lambda k: read_field(self.records[k]))

    def __len__(self) -> int:
        return -(-len(self.heads) // self.batch_size)

    def __iter__(self):
        inputs, labels, read = [], [], (-1, None)
        for k, patch in self.heads:  # in field order: each field is read once
            if read[0] != k:
                read = (k, read_field(self.records[k]))
            image = read[1]
            matrix = crop_matrix(patch.mask, self.size, self.fraction)
            x, lab = cut_head(image, patch, matrix, self.size)
            inputs.append(x)
            labels.append(lab)
            if len(inputs) == self.batch_size:
                yield _batch(inputs, labels)
                inputs, labels = [], []
        if inputs:
            yield _batch(inputs, labels)
