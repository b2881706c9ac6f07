"""Best-model hooks: detectron2's ``BestCheckpointer`` plus a JSON record and resumable state."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from detectron2.engine.hooks import BestCheckpointer

from sperm_d2.atomic import write_json_atomic

logger = logging.getLogger(__name__)

#: storage keys that come from evaluation or validation (recorded with the winning iteration).
RESULT_PREFIXES = (
    "bbox/",
    "segm/",
    "pixellib/",
    "grader/",
    "parts/",
    "validation_loss",
    "val_",
)


class SpermBestCheckpointer(BestCheckpointer):
    """Keep ``<file_prefix>.pth`` at the best ``val_metric``, described in ``json_name``.

    Runs after the hook that puts the metric into the event storage (EvalHook or ValidationLoss).
    The JSON holds the metric, its mode, the winning value and iteration, and every evaluation or
    validation number stored at that iteration. The best value survives ``--resume`` (it is part
    of the trainer state, and the JSON record is consulted too: a checkpoint is saved before the
    evaluation of its own iteration, so the state it holds misses a best found there, the last
    iteration's included), so a resumed run never overwrites a better model with a worse one.
    """

    def __init__(
        self,
        eval_period: int,
        checkpointer,
        val_metric: str,
        mode: str = "max",
        file_prefix: str = "model_best",
        json_name: str = "best_model.json",
    ) -> None:
        super().__init__(eval_period, checkpointer, val_metric, mode, file_prefix)
        self._mode = mode
        self._json_path = Path(checkpointer.save_dir) / json_name

    def after_step(self) -> None:
        previous = self.best_iter
        super().after_step()
        self._record_if_changed(previous)

    def after_train(self) -> None:
        previous = self.best_iter
        super().after_train()
        self._record_if_changed(previous)

    def _record_if_changed(self, previous_iter: int | None) -> None:
        if self.best_iter is None or self.best_iter == previous_iter:
            return
        latest = self.trainer.storage.latest()
        metrics = {
            k: float(v)
            for k, (v, it) in sorted(latest.items())
            if it == self.best_iter and k.startswith(RESULT_PREFIXES)
        }
        record = {
            "metric": self._val_metric,
            "mode": self._mode,
            "value": float(self.best_metric),
            "iteration": int(self.best_iter),
            "checkpoint": f"{self._file_prefix}.pth",
            "metrics": metrics,
        }
        write_json_atomic(self._json_path, record)
        logger.info(
            "best %s = %.4f at iteration %d", self._val_metric, record["value"], record["iteration"]
        )

    def state_dict(self) -> dict:
        # Python numbers only: checkpoints must load under torch's weights_only=True.
        if self.best_metric is None:
            return {}
        return {"best_metric": float(self.best_metric), "best_iter": int(self.best_iter)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_metric = state_dict.get("best_metric")
        self.best_iter = state_dict.get("best_iter")
        record = self._record_on_disk()
        if record and (self.best_metric is None or self._compare(record[0], self.best_metric)):
            self.best_metric, self.best_iter = record

    def _record_on_disk(self) -> tuple[float, int] | None:
        """(value, iteration) of this folder's JSON record when it is of this metric and mode
        and its checkpoint is there; ``None`` otherwise (or unreadable)."""
        try:
            record = json.loads(self._json_path.read_text(encoding="utf-8"))
            value, iteration = float(record["value"]), int(record["iteration"])
            same = (record["metric"], record["mode"]) == (self._val_metric, self._mode)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        checkpoint = self._json_path.parent / f"{self._file_prefix}.pth"
        return (value, iteration) if same and checkpoint.is_file() else None


class BestValLossCheckpointer(SpermBestCheckpointer):
    """Keep ``model_best_val_loss.pth`` at the lowest ``validation_loss`` (the study's selection).

    A separate class so that its state is saved apart from the main best-metric hook's.
    """

    def __init__(self, period: int, checkpointer) -> None:
        super().__init__(
            period,
            checkpointer,
            "validation_loss",
            mode="min",
            file_prefix="model_best_val_loss",
            json_name="best_val_loss.json",
        )
