"""The benchmark's crops on disk: the smoke run's subset of class folders, the images of a
prepared split, and class-folder trees of symlinks for ``evaluate.py --folders``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Sequence

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
    with open(data_root / "annotations" / f"{split}.json", encoding="utf-8") as f:
        images = json.load(f)["images"]
    return [Path(os.path.normpath(data_root / im["file_name"])) for im in images]


def class_folder_tree(images: Sequence[Path], dst: Path) -> Path:
    """``dst/<class folder>/<file>`` symlinks to ``images`` (their parent folder names the class),
    the layout ``evaluate.py --folders`` grades; nothing is copied."""
    if dst.exists():
        shutil.rmtree(dst)
    for img in images:
        link = dst / img.parent.name / img.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            raise ValueError(f"{img}: two images named {link.relative_to(dst)} in one split")
        link.symlink_to(img.resolve())
    return dst
