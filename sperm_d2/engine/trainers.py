"""Which trainer trains a config: one trainer class per model kind, on a shared base."""

from __future__ import annotations

from detectron2.config import CfgNode

from sperm_d2.engine.grader_trainer import GraderTrainer
from sperm_d2.engine.part_trainer import PartTrainer
from sperm_d2.engine.trainer import SpermTrainer
from sperm_d2.grading import GRADER_ARCHS
from sperm_d2.parts import PARTS_ARCH

#: ``MODEL.META_ARCHITECTURE`` -> its trainer; anything else (Mask R-CNN) trains with
#: :class:`SpermTrainer`
TRAINERS = {**dict.fromkeys(GRADER_ARCHS, GraderTrainer), PARTS_ARCH: PartTrainer}


def trainer_class(cfg: CfgNode) -> type[SpermTrainer]:
    """The trainer class for ``cfg``'s model."""
    return TRAINERS.get(cfg.MODEL.META_ARCHITECTURE, SpermTrainer)
