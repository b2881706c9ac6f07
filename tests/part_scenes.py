"""Tiny synthetic fields of sperm annotated in parts (labelme, one polygon per part, the parts
of one sperm sharing a group_id), built at test time for the part segmenter's tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sperm_d2.data.labelme_io import write_labelme_json

#: BGR colour each part is drawn in (strong enough for a few iterations to find)
COLOURS = {
    "tail": (60, 160, 60),
    "midpiece": (160, 40, 160),
    "acrosome": (40, 200, 230),
    "nucleus": (200, 80, 40),
    "vacuole": (250, 250, 250),
}


def ellipse_points(cx, cy, a, b, angle, n=24, t0=0.0, t1=2 * np.pi) -> np.ndarray:
    """Points of an ellipse (arc) centred at (cx, cy), semi-axes a (along angle) and b."""
    t = np.linspace(t0, t1, n)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def sperm_polygons(cx, cy, angle, scale=1.0, vacuole=True) -> dict[str, np.ndarray]:
    """Part polygons of one sperm whose head is centred at (cx, cy), long axis along ``angle``
    (the acrosome at the front, midpiece and tail behind)."""
    a, b = 12 * scale, 8 * scale
    c, s = np.cos(angle), np.sin(angle)

    def along(u, v):  # head frame -> image
        return np.stack([cx + c * u - s * v, cy + s * u + c * v], -1)

    parts = {
        "acrosome": ellipse_points(cx, cy, a, b, angle, 16, -np.pi / 2, np.pi / 2),
        "nucleus": ellipse_points(cx, cy, a, b, angle, 16, np.pi / 2, 3 * np.pi / 2),
        "midpiece": along(
            np.array([-a, -a - 12 * scale, -a - 12 * scale, -a]), np.array([-2, -2, 2, 2]) * scale
        ),
        "tail": along(
            np.array([-a - 12 * scale, -a - 40 * scale, -a - 40 * scale, -a - 12 * scale]),
            np.array([-1, -1, 1, 1]) * scale,
        ),
    }
    if vacuole:
        parts["vacuole"] = ellipse_points(
            cx - 4 * c * scale, cy - 4 * s * scale, 2.5 * scale, 2.5 * scale, 0, 10
        )
    return parts


def write_part_scene(out_dir: Path, name: str, seed: int, size: int = 128) -> Path:
    """One field with 2 sperm as ``name.png`` + ``name.json``; returns the JSON path."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 180, np.uint8)
    image += rng.integers(0, 20, image.shape, dtype=np.uint8)
    shapes = []
    for gid, (cx, cy) in enumerate([(size * 0.7, size * 0.3), (size * 0.7, size * 0.75)], 1):
        angle = rng.uniform(-0.3, 0.3)
        polys = sperm_polygons(cx, cy, angle, vacuole=bool(rng.random() < 0.7))
        for label in ("tail", "midpiece", "acrosome", "nucleus", "vacuole"):
            if label not in polys:
                continue
            pts = polys[label]
            cv2.fillPoly(image, [np.round(pts).astype(np.int32)], COLOURS[label])
            shapes.append(
                {
                    "label": label.capitalize(),
                    "points": pts.tolist(),
                    "group_id": gid,
                    "shape_type": "polygon",
                }
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_dir / f"{name}.png"), image)
    json_path = out_dir / f"{name}.json"
    write_labelme_json(json_path, out_dir / f"{name}.png", size, size, shapes)
    return json_path


def make_part_dataset(root: Path, num_images: int = 8, size: int = 128, seed: int = 0) -> Path:
    """Labelme fields under ``root/labelme`` prepared into COCO splits under ``root``
    (train/val by 6:2) with configs/labels/sperm_parsing_parts.yaml; returns ``root``."""
    from sperm_d2.data.labels import LabelMap
    from sperm_d2.data.prepare import prepare_dataset

    repo = Path(__file__).resolve().parents[1]
    for i in range(num_images):
        write_part_scene(root / "labelme", f"field_{i:02d}", seed * 1000 + i, size)
    label_map = LabelMap.load(repo / "configs/labels/sperm_parsing_parts.yaml")
    prepare_dataset(root / "labelme", root, label_map, ratios=(6, 2), seed=seed)
    return root
