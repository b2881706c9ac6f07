"""Data layer: labelme/class-folder input -> validated COCO splits -> registered datasets.

Conversion modules (``labels``, ``labelme_io``, ``convert``, ``prepare``, ``autoannotate``,
``synthetic``...) import neither torch nor detectron2; the detectron2-facing names below
(registration, augmentation) are imported lazily on first access so that
``import sperm_d2.data.convert`` stays light.
"""

import importlib

_LAZY = {
    "register_sperm_datasets": "sperm_d2.data.register",
    "register_split": "sperm_d2.data.register",
    "resolve_data_root": "sperm_d2.data.register",
    "build_train_augmentation": "sperm_d2.data.augment",
    "LabelMap": "sperm_d2.data.labels",
    "UnknownLabelError": "sperm_d2.data.labels",
    "read_labelme_json": "sperm_d2.data.labelme_io",
    "write_labelme_json": "sperm_d2.data.labelme_io",
    "prepare_dataset": "sperm_d2.data.prepare",
    "render_scene": "sperm_d2.data.synthetic",
    "render_video_frames": "sperm_d2.data.synthetic",
    "make_synthetic_crops": "sperm_d2.data.synthetic_io",
    "make_synthetic_dataset": "sperm_d2.data.synthetic_io",
    "write_synthetic_video": "sperm_d2.data.synthetic_io",
    "segment_head": "sperm_d2.data.autoannotate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
