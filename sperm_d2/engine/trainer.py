"""``SpermTrainer``: detectron2's DefaultTrainer with the project's data, evaluation and hooks;
the detector's trainer and the base of the other models' (``engine/trainers.py``)."""

from __future__ import annotations

import functools
import logging
import math
import os
import weakref
from contextlib import nullcontext

from detectron2.config import CfgNode
from detectron2.data import DatasetMapper, build_detection_train_loader
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import DatasetEvaluators
from detectron2.utils import comm
from fvcore.nn.precise_bn import get_bn_modules

from sperm_d2.data import build_train_augmentation
from sperm_d2.engine.best import BestValLossCheckpointer, SpermBestCheckpointer
from sperm_d2.engine.checkpoint import SpermCheckpointer
from sperm_d2.engine.cpu_amp import CPUAutocastTrainer, quiet_cuda_grad_scaler
from sperm_d2.engine.distributed import cpu_ddp_support
from sperm_d2.engine.early_stop import EarlyStopping
from sperm_d2.engine.ema import EMAUpdate, ModelEMA
from sperm_d2.engine.metrics_outputs import ResultsTable, TrainingPlots
from sperm_d2.engine.val_loss import ValidationLoss
from sperm_d2.engine.val_round import ValRound
from sperm_d2.evaluation import build_evaluator
from sperm_d2.mask_score import use_mask_scoring
from sperm_d2.precision import for_inference, train_bf16, use_bf16
from sperm_d2.roi_align import use_sperm_roi_align

logger = logging.getLogger(__name__)

#: how often (iterations) detectron2's writers flush metrics.json / TensorBoard at most
WRITER_PERIOD = 20


def val_loss_period(cfg: CfgNode) -> int:
    """``SPERM.VAL_LOSS_PERIOD`` resolved: 0 follows ``TEST.EVAL_PERIOD``, negative disables."""
    period = cfg.SPERM.VAL_LOSS_PERIOD
    return cfg.TEST.EVAL_PERIOD if period == 0 else max(period, 0)


def inference_bf16(cfg: CfgNode) -> bool:
    """Whether evaluation runs under CPU bf16 autocast, as inference would
    (``SPERM.INFER_PRECISION`` on ``MODEL.DEVICE``)."""
    return use_bf16(cfg.SPERM.INFER_PRECISION, cfg.MODEL.DEVICE)


class SpermTrainer(DefaultTrainer):
    """DefaultTrainer whose ``build_*`` methods add the project's pieces; the loop is detectron2's.

    It trains Mask R-CNN; the head grader and the part segmenter train with its subclasses
    (:class:`~sperm_d2.engine.grader_trainer.GraderTrainer`,
    :class:`~sperm_d2.engine.part_trainer.PartTrainer`, picked by ``engine.trainers``), which
    replace the ``build_*`` methods and share everything else.
    * train loader: ``SPERM.AUG`` augmentations; ``DATALOADER.SAMPLER_TRAIN:
      RepeatFactorTrainingSampler`` (with ``REPEAT_THRESHOLD``) gives class-balanced sampling.
    * evaluator: COCO bbox/segm with per-class AP plus ``pixellib/mAP50``.
    * ``SOLVER.AMP.ENABLED`` on the CPU trains under bf16 autocast (:class:`CPUAutocastTrainer`
      in place of detectron2's CUDA-only AMPTrainer); on CUDA it is detectron2's AMP.
    * evaluation and validation loss run at the inference precision (``SPERM.INFER_PRECISION``),
      from one pass over the val split per round (:class:`ValRound`).
    * ``SPERM.EMA_DECAY`` > 0 keeps a moving average of the weights (:mod:`sperm_d2.engine.ema`):
      evaluation rounds, ``model_best*.pth`` and ``model_final.pth`` use it.
    * hooks, in order: timer, LR, weight average, periodic checkpoint, validation loss,
      evaluation, best model (``model_best.pth``), best by validation loss, early stopping,
      writers (metrics.json, TensorBoard, console), results.csv, plots.
    """

    def __init__(self, cfg: CfgNode) -> None:
        cpu_bf16 = train_bf16(cfg.SOLVER.AMP.ENABLED, cfg.MODEL.DEVICE)
        # Only to let the parent wrap a CPU model for gloo (and build an AMPTrainer without CUDA
        # quietly); construction is DefaultTrainer's own.
        with cpu_ddp_support(), quiet_cuda_grad_scaler() if cpu_bf16 else nullcontext():
            super().__init__(cfg)
        if cpu_bf16:
            # DefaultTrainer built its (CUDA-only) AMPTrainer; the CPU step shares its parts.
            self._trainer = CPUAutocastTrainer.replacing(self._trainer)

    @classmethod
    def build_model(cls, cfg: CfgNode):
        """detectron2's model (NCHW: Mask R-CNN was not faster channels-last,
        benchmarks/bench_precision.py). Its ROI Align keeps the boxes fp32 under bf16 autocast
        and trains through a vectorised CPU formulation (:mod:`sperm_d2.roi_align`); in
        evaluation its scores are weighted by ``SPERM.MASK_SCORE_POWER`` as at inference."""
        model = use_sperm_roi_align(super().build_model(cfg))
        return use_mask_scoring(model, cfg.SPERM.MASK_SCORE_POWER)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        mapper = DatasetMapper(cfg, is_train=True, augmentations=build_train_augmentation(cfg))
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluators:
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def epoch_samples(cls, records: list[dict]) -> int:
        """What one epoch passes over (``SPERM.EPOCHS``): the images of a split's records."""
        return len(records)

    @classmethod
    def evaluates_alone(cls, cfg: CfgNode) -> bool:
        """Whether evaluation is this trainer's own ``test`` pass (its evaluator reports any
        validation loss) instead of the detector's shared :class:`ValRound`."""
        return False

    def build_checkpointer(self) -> SpermCheckpointer:
        """Atomic, corruption-tolerant checkpointer over the same model and trainer state (and
        the weight average, when there is one)."""
        extra = {"ema": self.ema} if self.ema is not None else {}
        return SpermCheckpointer(
            self.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self), **extra
        )

    def averaged_weights(self):
        """A context in which the model holds the weights it is evaluated and saved with: the
        moving average with ``SPERM.EMA_DECAY``, its own otherwise."""
        return self.ema.applied() if self.ema is not None else nullcontext()

    def build_hooks(self) -> list:
        cfg = self.cfg
        # built here: DefaultTrainer's __init__ calls build_hooks before it returns
        self.ema = ModelEMA(self.model, cfg.SPERM.EMA_DECAY) if cfg.SPERM.EMA_DECAY else None
        # DefaultTrainer has no build_checkpointer(); its checkpointer exists by now and no hook
        # holds it yet, so it is swapped here for the crash-safe one every hook then uses.
        self.checkpointer = self.build_checkpointer()
        main = comm.is_main_process()
        eval_period = cfg.TEST.EVAL_PERIOD
        vl_period = val_loss_period(cfg)
        evaluate = bool(cfg.DATASETS.TEST)

        # The detector's validation loss and evaluation share one pass over the val split per
        # round (ValRound); the grader's evaluator computes its validation loss in its own pass.
        val_loss = bool(vl_period) and not self.evaluates_alone(cfg)
        val_round = ValRound(
            cfg,
            functools.partial(self.build_evaluator, cfg),  # a classmethod: holds no trainer
            loss_period=vl_period if val_loss else None,
            eval_period=eval_period,
            bf16=inference_bf16(cfg),
            weights=self.averaged_weights,
        )

        def test_and_save_results():
            if self.evaluates_alone(self.cfg):
                with self.averaged_weights():
                    model = for_inference(self.model, inference_bf16(self.cfg))
                    self._last_eval_results = self.test(self.cfg, model)
            else:
                self._last_eval_results = val_round.evaluation(self)
            return self._last_eval_results

        ret = [hooks.IterationTimer(), hooks.LRScheduler(), self._precise_bn_hook()]
        if self.ema is not None:
            # before the checkpoint and evaluation of the same step
            ret.append(EMAUpdate(self.ema))
        if main:
            ret.append(hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD))
        if evaluate:
            # Validation loss and evaluation run on every process (each takes a shard).
            if val_loss:
                ret.append(ValidationLoss(vl_period, val_round))
            ret.append(hooks.EvalHook(eval_period, test_and_save_results))
            # Best-model hooks come after the hooks that store their metrics.
            if main:
                ret.append(
                    SpermBestCheckpointer(
                        eval_period, self.checkpointer, cfg.SPERM.BEST_METRIC, cfg.SPERM.BEST_MODE
                    )
                )
            if main and vl_period and cfg.SPERM.BEST_BY_VAL_LOSS:
                ret.append(BestValLossCheckpointer(vl_period, self.checkpointer))
            if cfg.SPERM.EARLY_STOP_PATIENCE > 0:
                ret.append(
                    EarlyStopping(
                        eval_period,
                        cfg.SPERM.BEST_METRIC,
                        cfg.SPERM.BEST_MODE,
                        cfg.SPERM.EARLY_STOP_PATIENCE,
                    )
                )
        if main:
            # Writers last, so every number stored above reaches metrics.json at its iteration;
            # the reports read metrics.json, so they follow the writers.
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=self._writer_period()))
            ret.append(ResultsTable(cfg.OUTPUT_DIR))
            ret.append(TrainingPlots(cfg.OUTPUT_DIR, cfg.SPERM.PLOT_PERIOD))
        return ret

    def _precise_bn_hook(self) -> hooks.PreciseBN | None:
        """detectron2's PreciseBN when enabled and the model has BatchNorm (none with GN)."""
        cfg = self.cfg
        if not (cfg.TEST.PRECISE_BN.ENABLED and get_bn_modules(self.model)):
            return None
        loader_cfg = cfg.clone()
        loader_cfg.defrost()
        loader_cfg.DATALOADER.NUM_WORKERS = 0
        return hooks.PreciseBN(
            cfg.TEST.EVAL_PERIOD,
            self.model,
            self.build_train_loader(loader_cfg),
            cfg.TEST.PRECISE_BN.NUM_ITER,
        )

    def _writer_period(self) -> int:
        """Largest period <= WRITER_PERIOD that also divides the eval and val-loss periods."""
        period = WRITER_PERIOD
        if not self.cfg.DATASETS.TEST:
            return period
        for p in (self.cfg.TEST.EVAL_PERIOD, val_loss_period(self.cfg)):
            if p > 0:
                period = math.gcd(period, p)
        return period
