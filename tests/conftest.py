"""Shared test fixtures: tiny data built at test time, registered and removed again."""

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class TinyDataset:
    """A tiny COCO dataset on disk, registered in detectron2 under ``names[split]``."""

    root: Path
    names: dict  # split -> registered dataset name
    jsons: dict  # split -> COCO json path


def _draw_tiny_coco(root: Path, split: str, num_images: int, seed: int, size: int = 96) -> Path:
    """Draw ``num_images`` stained images with 1-3 elliptic heads (good: round, bad: thin)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        img = np.full((size, size, 3), (200, 190, 215), np.uint8)
        img = (img + rng.normal(0, 6, img.shape)).clip(0, 255).astype(np.uint8)
        for _ in range(rng.integers(1, 4)):
            cls = int(rng.integers(1, 3))
            axes = (14, 9) if cls == 1 else (16, 5)
            center = tuple(int(c) for c in rng.integers(20, size - 20, 2))
            angle = int(rng.integers(0, 180))
            poly = cv2.ellipse2Poly(center, axes, angle, 0, 360, 15)
            colour = (120, 40, 90) if cls == 1 else (60, 20, 140)
            cv2.fillPoly(img, [poly], colour)
            x, y, w, h = cv2.boundingRect(poly)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=cls,
                    segmentation=[poly.astype(float).ravel().tolist()],
                    bbox=[float(x), float(y), float(w), float(h)],
                    area=float(cv2.contourArea(poly)),
                    iscrowd=0,
                )
            )
        name = f"images/{split}_{i:03d}.png"
        cv2.imwrite(str(root / name), img)
        images.append(dict(id=i + 1, file_name=name, width=size, height=size))
    coco = dict(
        images=images,
        annotations=annotations,
        categories=[dict(id=1, name="good"), dict(id=2, name="bad")],
    )
    path = root / "annotations" / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco))
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> TinyDataset:
    """8 train + 4 val tiny images registered as ``tiny_train`` / ``tiny_val`` for the session."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    root = tmp_path_factory.mktemp("tiny_dataset")
    ds = TinyDataset(root=root, names={}, jsons={})
    for split, n, seed in (("train", 8, 0), ("val", 4, 1)):
        ds.jsons[split] = _draw_tiny_coco(root, split, n, seed)
        ds.names[split] = f"tiny_{split}"
        register_coco_instances(ds.names[split], {}, str(ds.jsons[split]), str(root))
        MetadataCatalog.get(ds.names[split]).set(thing_classes=["good", "bad"])
    yield ds
    for name in ds.names.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
