"""``ValidationLoss``: the training losses on the validation split (the study selected by them)."""

from __future__ import annotations

import logging

from detectron2.engine import HookBase

from sperm_d2.engine.val_round import ValRound

logger = logging.getLogger(__name__)


class ValidationLoss(HookBase):
    """Every ``period`` iterations and after the last one, store the mean val loss.

    Stored scalars: ``validation_loss`` (sum of the parts) and ``val_<part>`` for each loss term
    (``val_loss_cls``, ``val_loss_mask``, ...), averaged over every val image on every process.
    The losses come from ``val_round``, whose one pass per round also serves the evaluation:
    the RPN and ROI heads run in training mode (only then does detectron2 compute losses) under
    ``torch.no_grad``, each image on its own, at the inference precision. A model with BatchNorm
    would update its running statistics there, so configs that train from scratch use GroupNorm.
    """

    def __init__(self, period: int, val_round: ValRound) -> None:
        self._period = period
        self._round = val_round

    def _store(self) -> None:
        result = self._round.losses(self.trainer)
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
