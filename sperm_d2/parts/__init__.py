"""Parts of each sperm: part segmenters over whole fields and over each head, and what follows.

``targets`` rasterises the annotated parts (numpy + OpenCV), ``model`` is the segmenter
(``SpermPartSegmenter``, registered in detectron2's ``META_ARCH_REGISTRY`` on import of this
package), ``loader`` feeds it random windows of fields (``SPERM.PARTS.INPUT "field"``),
``head_crop`` / ``head_loader`` / ``negatives`` feed it each head's canonical crop and a
detector's false heads (``"head"``), ``evaluator`` scores it (``parts/*`` IoU), ``assign`` and
``parser`` give each detected head its parts; ``sperm_d2.inference.part_criteria`` measures them
against WHO's criteria.
"""

from sperm_d2.parts.model import SpermPartSegmenter
from sperm_d2.parts.targets import HEAD_PARTS, PART_CLASSES

#: ``MODEL.META_ARCHITECTURE`` of the part segmenter's configs
PARTS_ARCH = "SpermPartSegmenter"


def is_part_segmenter(cfg) -> bool:
    """True for a part segmenter config."""
    return cfg.MODEL.META_ARCHITECTURE == PARTS_ARCH


__all__ = ["HEAD_PARTS", "PARTS_ARCH", "PART_CLASSES", "SpermPartSegmenter", "is_part_segmenter"]
