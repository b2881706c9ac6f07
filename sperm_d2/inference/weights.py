"""Weights into a built model by detectron2's checkpointer, the files read as data.

detectron2's own ``DetectionCheckpointer`` opens ``.pkl`` files with plain ``pickle``, which runs
whatever the file names; :class:`SafeCheckpointer` loads them through
:mod:`sperm_d2.weights_io` instead (a file that would run code is a ``CheckpointError``).
"""

from __future__ import annotations

import os

from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from sperm_d2.weights_io import SafeCheckpointLoading


class SafeCheckpointer(SafeCheckpointLoading, DetectionCheckpointer):
    """``DetectionCheckpointer`` whose files load as data (:class:`SafeCheckpointLoading`)."""


def load_model_weights(model: nn.Module, weights: str | os.PathLike) -> None:
    """Load ``weights`` (a local file or URL) into ``model`` (detectron2's name matching)."""
    SafeCheckpointer(model).load(str(weights))
