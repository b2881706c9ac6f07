"""``PartTrainer``: the engine for the part segmenter (``MODEL.META_ARCHITECTURE:
SpermPartSegmenter``): its model, its loaders (field windows and whole fields, or head crops with
``SPERM.PARTS.INPUT "head"``) and the ``parts/*`` evaluator; hooks, checkpoints, precision and the
loop are :class:`SpermTrainer`'s."""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import DatasetEvaluators

from sperm_d2.engine.trainer import SpermTrainer
from sperm_d2.parts.evaluator import PartEvaluator, scored_parts
from sperm_d2.parts.head_loader import HeadPartTestLoader, HeadPartTrainLoader
from sperm_d2.parts.loader import PartTestLoader, PartTrainLoader
from sperm_d2.precision import cpu_channels_last


class PartTrainer(SpermTrainer):
    """:class:`SpermTrainer` whose ``build_*`` methods give the part segmenter's pieces.
    Evaluation is its own pass over whole val fields (no detector validation round)."""

    @classmethod
    def build_model(cls, cfg: CfgNode):
        """detectron2's ``build_model``, channels-last on the CPU (a plain conv net; no ROI
        Align to replace)."""
        return cpu_channels_last(DefaultTrainer.build_model(cfg), cfg.MODEL.DEVICE)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> PartTrainLoader | HeadPartTrainLoader:
        if cfg.SPERM.PARTS.INPUT == "head":
            return HeadPartTrainLoader(cfg)
        return PartTrainLoader(cfg)

    @classmethod
    def build_test_loader(
        cls, cfg: CfgNode, dataset_name: str
    ) -> PartTestLoader | HeadPartTestLoader:
        if cfg.SPERM.PARTS.INPUT == "head":
            return HeadPartTestLoader(cfg, dataset_name)
        return PartTestLoader(cfg, dataset_name)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluators:
        return DatasetEvaluators(
            [PartEvaluator(dataset_name, list(cfg.SPERM.CLASSES), scored=scored_parts(cfg))]
        )

    @classmethod
    def evaluates_alone(cls, cfg: CfgNode) -> bool:
        return True
