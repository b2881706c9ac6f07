"""Parts of each sperm: a semantic part segmenter over whole fields and what follows from it.

``targets`` rasterises the annotated parts (numpy + OpenCV), ``model`` is the segmenter
(``SpermPartSegmenter``, registered in detectron2's ``META_ARCH_REGISTRY`` on import of this
package), ``loader`` feeds it random windows, ``evaluator`` scores it (``parts/*`` IoU),
``morphometry`` measures each sperm's parts against WHO's criteria.
"""

from sperm_d2.parts.model import SpermPartSegmenter
from sperm_d2.parts.targets import HEAD_PARTS, PART_CLASSES

#: ``MODEL.META_ARCHITECTURE`` of the part segmenter's configs
PARTS_ARCH = "SpermPartSegmenter"


def is_part_segmenter(cfg) -> bool:
    """True for a part segmenter config."""
    return cfg.MODEL.META_ARCHITECTURE == PARTS_ARCH


__all__ = ["HEAD_PARTS", "PARTS_ARCH", "PART_CLASSES", "SpermPartSegmenter", "is_part_segmenter"]
