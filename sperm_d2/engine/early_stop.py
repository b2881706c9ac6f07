"""``EarlyStopping``: end training after ``patience`` evaluations without a better metric."""

from __future__ import annotations

import logging
import math
import operator

from detectron2.engine import HookBase
from detectron2.utils import comm

from sperm_d2.errors import InputError

logger = logging.getLogger(__name__)


class EarlyStop(Exception):
    """Raised by :class:`EarlyStopping` to end ``train()``; carries the reason in one line.

    detectron2's loop has no stop flag; an exception is its only exit, and its ``finally`` still
    runs every hook's ``after_train`` (writers flush, plots are drawn).
    """


class _HideEarlyStop(logging.Filter):
    """Drop detectron2's "Exception during training" traceback when the exception is EarlyStop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], EarlyStop))


def hide_early_stop_traceback() -> None:
    """An early stop is a normal end of training: keep its traceback out of the log (idempotent)."""
    train_loop_logger = logging.getLogger("detectron2.engine.train_loop")
    if not any(isinstance(f, _HideEarlyStop) for f in train_loop_logger.filters):
        train_loop_logger.addFilter(_HideEarlyStop())


class EarlyStopping(HookBase):
    """Count evaluations since ``metric`` last improved; stop training at ``patience``.

    Runs after the evaluation hook (which stores the metric) and the best-model checkpointer (so
    the best weights are saved before stopping). The decision is made on the main process, where
    evaluation results live, and shared with every process so they all stop at the same step.
    """

    def __init__(self, eval_period: int, metric: str, mode: str, patience: int) -> None:
        if mode not in ("max", "min"):
            raise InputError(f"early stopping mode must be 'max' or 'min', got {mode!r}")
        self._period = eval_period
        self._metric = metric
        self._better = operator.gt if mode == "max" else operator.lt
        self._patience = patience
        self.best: float | None = None
        self.bad_evals = 0

    def update(self, value: float) -> bool:
        """Record one evaluation's value; True when patience is exhausted."""
        if math.isfinite(value) and (self.best is None or self._better(value, self.best)):
            self.best, self.bad_evals = float(value), 0
        else:
            self.bad_evals += 1
        return self.bad_evals >= self._patience

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if not (self._period > 0 and next_iter % self._period == 0):
            return
        if next_iter == self.trainer.max_iter:
            return  # training ends here anyway
        stop = False
        if comm.is_main_process():
            latest = self.trainer.storage.latest().get(self._metric)
            if latest is None:
                logger.warning("early stopping: metric %s was not computed", self._metric)
            elif latest[1] == self.trainer.iter:
                stop = self.update(float(latest[0]))
        if comm.get_world_size() > 1:
            stop = comm.all_gather(stop)[0]
        if stop:
            raise EarlyStop(
                f"stopped early after iteration {self.trainer.iter}: {self._metric} did not "
                f"improve on {self.best} in {self._patience} evaluations "
                f"(SPERM.EARLY_STOP_PATIENCE)"
            )

    def state_dict(self) -> dict:
        return {} if self.best is None else {"best": self.best, "bad_evals": int(self.bad_evals)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")
        self.bad_evals = int(state_dict.get("bad_evals", 0))
