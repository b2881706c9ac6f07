"""sperm_d2: find, outline and grade sperm heads with a Detectron2 Mask R-CNN."""

__version__ = "0.1.0"
