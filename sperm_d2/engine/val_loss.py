"""``ValidationLoss``: the training losses on the validation split (the study selected by them)."""

from __future__ import annotations

import logging
from collections import defaultdict

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetMapper, build_detection_test_loader, get_detection_dataset_dicts
from detectron2.data import transforms as T
from detectron2.engine import HookBase
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from sperm_d2.precision import autocast

logger = logging.getLogger(__name__)


def build_val_loss_loader(cfg: CfgNode, dataset_names: list[str]):
    """Val images with their annotations, resized like at test time and never augmented."""
    mapper = DatasetMapper(
        cfg,
        is_train=True,  # keep the annotations: the model needs them to compute its losses
        augmentations=[
            T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")
        ],
    )
    dicts = get_detection_dataset_dicts(list(dataset_names), filter_empty=False)
    return build_detection_test_loader(dicts, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS)


class ValidationLoss(HookBase):
    """Every ``period`` iterations and after the last one, store the mean val loss.

    Stored scalars: ``validation_loss`` (sum of the parts) and ``val_<part>`` for each loss term
    (``val_loss_cls``, ``val_loss_mask``, ...), averaged over every val image on every process.
    The model stays in training mode (only then does detectron2 compute losses) under
    ``torch.no_grad``; with BatchNorm that would update running statistics, so configs that
    train from scratch use GroupNorm (no running statistics). ``bf16``: compute them under CPU
    bf16 autocast (as evaluation does when inference runs in bf16).
    """

    def __init__(
        self, period: int, cfg: CfgNode, dataset_names: list[str], bf16: bool = False
    ) -> None:
        self._period = period
        self._bf16 = bf16
        self._cfg = cfg
        self._dataset_names = list(dataset_names)
        self._loader = None

    def _compute(self) -> dict[str, float]:
        if self._loader is None:
            self._loader = build_val_loss_loader(self._cfg, self._dataset_names)
        model = self.trainer.model
        # The bare module: no DDP collectives in a forward pass that has no backward.
        module = model.module if isinstance(model, DistributedDataParallel) else model
        was_training = module.training
        module.train()
        sums: dict[str, float] = defaultdict(float)
        count = 0
        try:
            with torch.no_grad(), autocast(self._bf16):
                for inputs in self._loader:
                    for k, v in module(inputs).items():
                        sums[k] += float(v) * len(inputs)
                    count += len(inputs)
        finally:
            module.train(was_training)
        gathered = comm.all_gather((dict(sums), count))
        total = sum(c for _, c in gathered)
        if total == 0:
            logger.warning("validation loss: %s holds no images", self._dataset_names)
            return {}
        parts: dict[str, float] = defaultdict(float)
        for s, _ in gathered:
            for k, v in s.items():
                parts[k] += v / total
        result = {"validation_loss": sum(parts.values())}
        result.update({f"val_{k}": v for k, v in sorted(parts.items())})
        return result

    def _store(self) -> None:
        result = self._compute()
        if result:
            self.trainer.storage.put_scalars(**result, smoothing_hint=False)
            logger.info(
                "iteration %d: validation_loss %.4f (%s)",
                self.trainer.iter,
                result["validation_loss"],
                ", ".join(f"{k[4:]} {v:.4f}" for k, v in result.items() if k.startswith("val_")),
            )

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if (
            self._period > 0
            and next_iter % self._period == 0
            and next_iter != self.trainer.max_iter
        ):
            self._store()

    def after_train(self) -> None:
        # Same rule as detectron2's EvalHook: the final value comes after the last iteration only
        # when training reached it (not after a crash or an early stop).
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            self._store()
