"""The benchmark's crops on disk: the smoke run's subset of class folders and the images of a
prepared split (``evaluate.py --folders`` reads the split's COCO file itself)."""

from __future__ import annotations

import shutil
from pathlib import Path

from sperm_d2.data.coco import split_image_paths
from sperm_d2.image_io import IMAGE_EXTS


def smoke_subset(src: Path, dst: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` crops (sorted) of every class folder of ``src`` to ``dst``."""
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        (dst / folder.name).mkdir(parents=True, exist_ok=True)
        for f in files[:per_class]:
            shutil.copy2(f, dst / folder.name / f.name)
    return dst


def split_images(data_root: Path, split: str) -> list[Path]:
    """Absolute image paths of ``annotations/<split>.json`` (file names are data-root relative)."""
    return split_image_paths(data_root / "annotations" / f"{split}.json")
