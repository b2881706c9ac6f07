"""Weights into a built model, whole or not at all (inference and the part parser).

At inference the weights must fit the model whole: detectron2 loads what fits and leaves the
rest at random initialisation with a log line, which turned a checkpoint of another class count
or architecture into random heads and a clean exit. :func:`load_model_weights` refuses it,
naming the file and the layers (training may still fine-tune from such a file: its
checkpointer logs the layers that start fresh).
"""

from __future__ import annotations

import logging
import os

from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from sperm_d2.weights_io import CheckpointError, SafeCheckpointLoading

__all__ = ["SafeCheckpointer", "WeightsMismatchError", "load_model_weights", "mismatch_message"]


class WeightsMismatchError(CheckpointError):
    """Weights that fit the model only in part (another class count or architecture)."""


class SafeCheckpointer(SafeCheckpointLoading, DetectionCheckpointer):
    """``DetectionCheckpointer`` whose files load as data (:class:`SafeCheckpointLoading`);
    ``incompatible`` keeps what did not fit (detectron2's ``_IncompatibleKeys``) after a load."""

    incompatible = None

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def _layers(keys: list[str], limit: int = 4) -> str:
    """Parameter names grouped by layer (``.weight``/``.bias`` dropped), the first ``limit``."""
    layers = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in keys))
    more = f" and {len(layers) - limit} more" if len(layers) > limit else ""
    return ", ".join(layers[:limit]) + more


def mismatch_message(incompatible) -> str | None:
    """What of a checkpoint did not fit the model, in one phrase, or ``None`` when all did."""
    if incompatible is None:
        return None
    parts = []
    if incompatible.incorrect_shapes:
        shapes = incompatible.incorrect_shapes
        first = shapes[0]
        parts.append(
            f"{len(shapes)} parameter(s) of another shape ({_layers([k for k, *_ in shapes])}; "
            f"{first[0]}: file {tuple(first[1])}, model {tuple(first[2])})"
        )
    if incompatible.missing_keys:
        parts.append(
            f"{len(incompatible.missing_keys)} parameter(s) missing from the file "
            f"({_layers(incompatible.missing_keys)})"
        )
    if incompatible.unexpected_keys:
        parts.append(
            f"{len(incompatible.unexpected_keys)} parameter(s) the model does not have "
            f"({_layers(incompatible.unexpected_keys)})"
        )
    return "; ".join(parts) or None


class _HeldRecords(logging.Filter):
    """A logger filter that holds back every record (in ``records``) instead of letting it out."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


def load_model_weights(model: nn.Module, weights: str | os.PathLike) -> None:
    """Load ``weights`` (a local file or URL) into ``model`` (detectron2's name matching).

    fvcore logs a warning for each parameter that does not fit; they are held back during the
    load and dropped when the file is then refused (the one line names the layers), logged as
    usual otherwise.

    Raises:
        WeightsMismatchError: the file fits the model only in part (another class count or
            architecture): one line naming the file and the layers. Nothing would be random.
    """
    checkpointer = SafeCheckpointer(model)
    held, problem = _HeldRecords(), None
    checkpointer.logger.addFilter(held)
    try:
        checkpointer.load(str(weights))
        problem = mismatch_message(checkpointer.incompatible)
    finally:
        checkpointer.logger.removeFilter(held)
        if not problem:  # loaded whole, or failed otherwise: what fvcore said is still worth saying
            for record in held.records:
                checkpointer.logger.handle(record)
    if problem:
        raise WeightsMismatchError(
            f"{weights}: fits this model only in part (another class count or architecture?): "
            f"{problem}; give the weights trained with this config"
        )
