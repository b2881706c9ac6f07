"""The grader's samples: one canonical crop per annotated head of a registered COCO split.

Crops are cut once per run and kept in ``<OUTPUT_DIR>/grader_crops/<dataset>.npz`` (a few MB:
SMIDS's 1,115 training heads at 64 px and 4 channels are 18 MB), so epochs never decode an
image again and a resumed or evaluate-only run reuses them. The cache is keyed by the split's
JSON file (path, size, modification time) and the crop settings; anything else rebuilds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from pycocotools import mask as mask_util
from tqdm import tqdm

from sperm_d2.atomic import atomic_write
from sperm_d2.grading.crop import canonical_crop, input_channels, model_input
from sperm_d2.masks import segmentation_to_rle

logger = logging.getLogger(__name__)

CACHE_DIR = "grader_crops"


@dataclasses.dataclass
class HeadSamples:
    """``images`` (N, S, S, C) uint8 model inputs, ``labels`` (N,) int64 contiguous class ids,
    ``sources`` (N,) the image file of each head."""

    images: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self, num_classes: int) -> np.ndarray:
        """Heads per class (length ``num_classes``)."""
        return np.bincount(self.labels, minlength=num_classes)[:num_classes]


def crop_settings(cfg: CfgNode) -> dict:
    """The config values a crop depends on (part of the cache key)."""
    g = cfg.SPERM.GRADER
    return {
        "crop": {  # canonical_crop's arguments
            "size": int(g.CROP_SIZE),
            "head_fraction": float(g.HEAD_FRACTION),
            "max_scale": float(g.MAX_SCALE),
            "fixed_scale": float(g.FIXED_SCALE),
            "align": str(g.VIEW) == "aligned",
        },
        "mask_mode": str(g.MASK_MODE),
        "format": str(cfg.INPUT.FORMAT),
    }


def annotation_mask(segmentation, height: int, width: int) -> np.ndarray:
    """A detectron2 annotation's segmentation (polygons or RLE) as an (H, W) bool mask."""
    return mask_util.decode(segmentation_to_rle(segmentation, height, width)).astype(bool)


def cut_samples(records: list[dict], settings: dict, desc: str = "crops") -> HeadSamples:
    """One crop per non-crowd annotation of ``records`` (detectron2 dataset dicts)."""
    images, labels, sources = [], [], []
    for record in tqdm(records, desc=desc, unit="img", leave=False):
        anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        if not anns:
            continue
        image = read_image(record["file_name"], format=settings["format"])
        h, w = image.shape[:2]
        for a in anns:
            mask = annotation_mask(a["segmentation"], h, w)
            crop = canonical_crop(image, mask, **settings["crop"])
            images.append(model_input(crop, settings["mask_mode"]))
            labels.append(int(a["category_id"]))
            sources.append(record["file_name"])
    size, channels = settings["crop"]["size"], input_channels(settings["mask_mode"])
    return HeadSamples(
        images=(np.stack(images) if images else np.zeros((0, size, size, channels), np.uint8)),
        labels=np.asarray(labels, np.int64),
        sources=np.asarray(sources, dtype=str),
    )


def _cache_key(dataset_name: str, settings: dict) -> str:
    meta = MetadataCatalog.get(dataset_name)
    json_file = getattr(meta, "json_file", None)
    stat = os.stat(json_file) if json_file and os.path.isfile(json_file) else None
    key = {
        "dataset": dataset_name,
        "json_file": json_file,
        "json_stat": [stat.st_size, stat.st_mtime_ns] if stat else None,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def load_samples(cfg: CfgNode, dataset_name: str, cache_dir: str | os.PathLike | None = None):
    """The head crops of a registered split, from the cache in ``cache_dir`` (default
    ``<OUTPUT_DIR>/grader_crops``) when it matches, else cut now and cached."""
    settings = crop_settings(cfg)
    cache_dir = Path(cache_dir or Path(cfg.OUTPUT_DIR) / CACHE_DIR)
    path = cache_dir / f"{dataset_name}.npz"
    key = _cache_key(dataset_name, settings)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return HeadSamples(z["images"], z["labels"], z["sources"])
        except (OSError, ValueError, KeyError) as e:  # a cut-short file: rebuild it
            logger.warning("%s: unreadable crop cache (%s); cutting the crops again", path, e)
    samples = cut_samples(DatasetCatalog.get(dataset_name), settings, desc=dataset_name)
    logger.info(
        "%s: %d head crops of %d px (%s)",
        dataset_name,
        len(samples),
        settings["crop"]["size"],
        path,
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, key=key, images=samples.images, labels=samples.labels, sources=samples.sources)
    return samples
