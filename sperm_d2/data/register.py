"""Register the project's COCO splits with detectron2 (explicitly, idempotently, lazily).

``register_sperm_datasets(cfg)`` registers ``{SPERM.DATASET_PREFIX}_{split}`` for every
``annotations/{split}.json`` under the data root. Registration only records a loader; the JSON is
read when a split is first used (``DatasetCatalog.get``), so registering is cheap.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from sperm_d2.errors import InputError
from sperm_d2.image_io import image_shape_problem

logger = logging.getLogger(__name__)

ENV_DATA_ROOT = "SPERM_D2_DATASETS"
DEFAULT_DATA_ROOT = os.path.join("datasets", "sperm")


def resolve_data_root(cfg=None) -> Path:
    """``cfg.SPERM.DATA_ROOT``, else ``$SPERM_D2_DATASETS``, else ``./datasets/sperm``."""
    root = cfg.SPERM.DATA_ROOT if cfg is not None else ""
    return Path(root or os.environ.get(ENV_DATA_ROOT) or DEFAULT_DATA_ROOT)


def load_registered(name: str) -> list[dict]:
    """``DatasetCatalog.get(name)``, read now so a broken annotation file is one line naming it
    (a ``ValueError``) before a model loads or a run folder exists, not a traceback later."""
    try:
        return DatasetCatalog.get(name)
    except InputError:  # already one line naming the file
        raise
    except Exception as e:  # json, pycocotools and detectron2 raise many types
        json_file = getattr(MetadataCatalog.get(name), "json_file", name)
        raise InputError(
            f"{json_file}: dataset {name} cannot be loaded ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}); re-run tools/prepare_data.py"
        ) from None


def _load_split(name: str, json_path: str, image_root: str, classes: list[str]) -> list[dict]:
    with open(json_path, encoding="utf-8") as f:
        names = [c["name"] for c in sorted(json.load(f)["categories"], key=lambda c: c["id"])]
    if names != list(classes):
        raise InputError(
            f"{json_path}: categories {names} differ from SPERM.CLASSES {list(classes)}; "
            "re-run tools/prepare_data.py with a label map of these classes"
        )
    # group_id (labelme's, kept by the converter) links the parts of one sperm
    records = load_coco_json(json_path, image_root, name, extra_annotation_keys=["group_id"])
    for r in records:  # written before prepare_data.py refused them: training would crash on it
        problem = image_shape_problem(int(r["width"]), int(r["height"]))
        if problem:
            raise InputError(
                f"{json_path}: image {r['file_name']} {problem}; re-run tools/prepare_data.py "
                "(it refuses such images)"
            )
    return records


def register_split(
    name: str,
    json_path: str | os.PathLike,
    image_root: str | os.PathLike,
    classes: Sequence[str],
    colors: Sequence[Sequence[int]] | None = None,
) -> str:
    """Register one COCO json as dataset ``name`` (re-registering replaces it); returns ``name``.

    ``file_name`` entries are joined onto ``image_root`` (they may hold ``../`` or be absolute).
    """
    json_path, image_root, classes = str(json_path), str(image_root), list(classes)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if getattr(meta, "json_file", None) == json_path and meta.get("image_root") == image_root:
            if list(meta.get("thing_classes", [])) == classes:
                return name  # already registered as asked
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: _load_split(name, json_path, image_root, classes))
    meta = dict(
        json_file=json_path,
        image_root=image_root,
        evaluator_type="coco",
        thing_classes=classes,
        thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(classes))},
    )
    if colors:
        meta["thing_colors"] = [tuple(int(v) for v in c) for c in colors]
    MetadataCatalog.get(name).set(**meta)
    return name


def register_sperm_datasets(cfg, data_root: str | os.PathLike | None = None) -> list[str]:
    """Register every ``annotations/*.json`` split under the data root; returns the names.

    Idempotent: calling it again re-uses (or, if the files changed place, replaces) the entries.
    """
    root = Path(data_root) if data_root else resolve_data_root(cfg)
    ann_dir = root / "annotations"
    if not ann_dir.is_dir():
        logger.warning("%s: no annotations/ folder, no dataset registered", root)
        return []
    names = []
    for json_path in sorted(ann_dir.glob("*.json")):
        if json_path.name == "report.json":
            continue
        name = f"{cfg.SPERM.DATASET_PREFIX}_{json_path.stem}"
        register_split(name, json_path, root, cfg.SPERM.CLASSES, cfg.SPERM.CLASS_COLORS)
        names.append(name)
    logger.info("registered %s from %s", names, root)
    return names
