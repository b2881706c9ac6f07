"""Draw a registered dataset's ground truth to PNGs, raw or after the training augmentations."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.utils.visualizer import ColorMode, Visualizer
from tqdm import tqdm

from sperm_d2.data.augment import build_train_augmentation
from sperm_d2.image_io import write_image

logger = logging.getLogger(__name__)


def augmented_record(record: dict, image: np.ndarray, augs: T.AugmentationList):
    """Apply ``augs`` to an RGB image and its annotations (as the training mapper does)."""
    aug_input = T.AugInput(image)
    tfms = augs(aug_input)
    h, w = aug_input.image.shape[:2]
    annos = [utils.transform_instance_annotations(a, tfms, (h, w)) for a in record["annotations"]]
    return aug_input.image, dict(record, annotations=annos, height=h, width=w)


def draw_dataset(
    dataset_name: str,
    output_dir: str | os.PathLike,
    *,
    num: int = 16,
    cfg=None,
    augmented: bool = False,
    seed: int = 0,
    scale: float = 2.0,
) -> list[Path]:
    """Write up to ``num`` overlays of ``dataset_name`` (evenly spread over it); returns paths.

    With ``augmented`` the images first go through ``build_train_augmentation(cfg)`` (seeded).
    """
    records = DatasetCatalog.get(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    picks = np.unique(np.linspace(0, len(records) - 1, min(num, len(records))).astype(int))
    augs = T.AugmentationList(build_train_augmentation(cfg)) if augmented else None
    np.random.seed(seed)  # detectron2's augmentations draw from numpy's global generator
    out_dir, written = Path(output_dir), []
    for i in tqdm(picks, desc="draw", unit="img", disable=len(picks) < 50):
        record = records[i]
        image = utils.read_image(record["file_name"], format="RGB")
        if augs is not None:
            image, record = augmented_record(record, image, augs)
        mode = ColorMode.SEGMENTATION  # class colours from thing_colors
        vis = Visualizer(image, metadata=meta, scale=scale, instance_mode=mode)
        vis = vis.draw_dataset_dict(record)
        path = out_dir / f"{Path(record['file_name']).stem}_{record['image_id']}.png"
        write_image(path, vis.get_image()[:, :, ::-1])
        written.append(path)
    logger.info("wrote %d overlays of %s to %s", len(written), dataset_name, out_dir)
    return written
