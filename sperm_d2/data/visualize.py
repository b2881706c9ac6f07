"""Draw a registered dataset's ground truth to PNGs, raw or after the training augmentations."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.utils.visualizer import ColorMode, Visualizer
from tqdm import tqdm

from sperm_d2.atomic import real_path
from sperm_d2.data.augment import build_train_augmentation
from sperm_d2.data.problems import check_seed
from sperm_d2.data.register import load_registered
from sperm_d2.errors import InputError
from sperm_d2.image_io import read_image, write_image

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
) -> tuple[list[Path], list[dict]]:
    """Write up to ``num`` overlays of ``dataset_name`` (evenly spread over it); returns the
    paths written and the images skipped (``{"path", "reason"}``: unreadable, warned about).

    With ``augmented`` the images first go through ``build_train_augmentation(cfg)`` (seeded).

    Raises:
        InputError: ``num`` below 1, a seed outside [0, 2**32), an empty split, or an output
            folder that is a file or holds the split's images (overlays would land among them).
    """
    if num < 1:
        raise InputError(f"--num {num}: expected at least 1 image to draw")
    check_seed(seed)
    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--output {out_dir}: exists and is not a folder")
    records = load_registered(dataset_name)
    if not records:
        json_file = getattr(MetadataCatalog.get(dataset_name), "json_file", dataset_name)
        raise InputError(f"{json_file}: split {dataset_name} holds no image to draw")
    image_dirs = {real_path(r["file_name"]).parent for r in records}
    if real_path(out_dir) in image_dirs:
        raise InputError(
            f"--output {out_dir}: holds images of {dataset_name}; write the overlays elsewhere"
        )
    meta = MetadataCatalog.get(dataset_name)
    picks = np.unique(np.linspace(0, len(records) - 1, min(num, len(records))).astype(int))
    augs = T.AugmentationList(build_train_augmentation(cfg)) if augmented else None
    np.random.seed(seed)  # detectron2's augmentations draw from numpy's global generator
    written, skipped = [], []
    for i in tqdm(picks, desc="draw", unit="img", disable=len(picks) < 50):
        record = records[i]
        image, reason = read_image(record["file_name"])  # the one reader of every tool
        if image is None:
            logger.warning("skipped %s: %s", record["file_name"], reason)
            skipped.append({"path": record["file_name"], "reason": reason})
            continue
        image = image[:, :, ::-1]  # BGR -> RGB, as the Visualizer draws
        if augs is not None:
            image, record = augmented_record(record, image, augs)
        mode = ColorMode.SEGMENTATION  # class colours from thing_colors
        vis = Visualizer(image, metadata=meta, scale=scale, instance_mode=mode)
        vis = vis.draw_dataset_dict(record)
        path = out_dir / f"{Path(record['file_name']).stem}_{record['image_id']}.png"
        write_image(path, vis.get_image()[:, :, ::-1])
        written.append(path)
    logger.info(
        "wrote %d overlays of %s to %s (%d skipped)",
        len(written),
        dataset_name,
        out_dir,
        len(skipped),
    )
    return written, skipped
