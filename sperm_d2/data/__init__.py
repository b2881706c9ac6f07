"""Data layer: labelme/class-folder input -> validated COCO splits -> registered datasets.

Conversion modules (``labels``, ``labelme_io``, ``convert``, ``prepare``, ``autoannotate``,
``synthetic``...) import neither torch nor detectron2; the detectron2-facing names below
(registration, augmentation) are imported lazily on first access so that
``import sperm_d2.data.convert`` stays light.
"""

from sperm_d2.lazy import lazy_exports

_LAZY = {
    "sperm_d2.data.register": (
        "load_registered",
        "register_sperm_datasets",
        "register_split",
        "resolve_data_root",
    ),
    "sperm_d2.data.augment": ("build_train_augmentation",),
    "sperm_d2.data.labels": ("LabelMap", "UnknownLabelError"),
    "sperm_d2.data.labelme_io": ("read_labelme_json", "write_labelme_json"),
    "sperm_d2.data.prepare": ("prepare_dataset",),
    "sperm_d2.data.synthetic": ("render_scene", "render_video_frames"),
    "sperm_d2.data.synthetic_io": (
        "make_synthetic_crops",
        "make_synthetic_dataset",
        "write_synthetic_video",
    ),
    "sperm_d2.data.autoannotate": ("segment_head",),
}

__all__ = sorted(name for names in _LAZY.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
