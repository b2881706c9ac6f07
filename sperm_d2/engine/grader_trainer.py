"""``GraderTrainer``: the engine for the head grader (``MODEL.META_ARCHITECTURE``
``SpermHeadGrader`` or ``SpermGraderEnsemble``): its model in channels-last, its crop loaders
and ``GraderEvaluator`` (``grader/*`` metrics, validation loss included); hooks, checkpoints,
precision and the loop are :class:`SpermTrainer`'s."""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import DatasetEvaluators

from sperm_d2.engine.trainer import SpermTrainer
from sperm_d2.grading.evaluator import GraderEvaluator
from sperm_d2.grading.loader import GraderTrainLoader, build_grader_test_loader
from sperm_d2.precision import cpu_channels_last


class GraderTrainer(SpermTrainer):
    """:class:`SpermTrainer` whose ``build_*`` methods give the head grader's pieces.
    Evaluation is its own pass over the val crops (no detector validation round)."""

    @classmethod
    def build_model(cls, cfg: CfgNode):
        """detectron2's ``build_model``, channels-last on the CPU (its training step measured
        1.35x faster so in fp32, 2.15x with bf16 vs 1.70x without; Mask R-CNN's was not faster:
        benchmarks/bench_precision.py, 1 thread)."""
        return cpu_channels_last(DefaultTrainer.build_model(cfg), cfg.MODEL.DEVICE)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> GraderTrainLoader:
        return GraderTrainLoader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_grader_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluators:
        return DatasetEvaluators([GraderEvaluator(dataset_name, list(cfg.SPERM.CLASSES))])

    @classmethod
    def epoch_samples(cls, records: list[dict]) -> int:
        """What one epoch passes over: the annotated heads (one crop each)."""
        return sum(1 for r in records for a in r.get("annotations", []) if not a.get("iscrowd", 0))

    @classmethod
    def evaluates_alone(cls, cfg: CfgNode) -> bool:
        return True
