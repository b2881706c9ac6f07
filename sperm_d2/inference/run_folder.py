"""Training run folders as model sources: their resolved config and their checkpoint file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from detectron2.config import CfgNode

from sperm_d2.config import setup_cfg
from sperm_d2.errors import InputNotFoundError

#: checkpoint names tried, in order, in a run folder
RUN_CHECKPOINTS = ("model_best.pth", "model_final.pth")


def find_run_weights(run_dir: str | os.PathLike, checkpoint: str = "") -> Path:
    """The checkpoint file of a run folder: ``checkpoint`` if given, else best, else final."""
    run_dir = Path(run_dir)
    names = [checkpoint] if checkpoint else list(RUN_CHECKPOINTS)
    for name in names:
        if (run_dir / name).is_file():
            return run_dir / name
    raise InputNotFoundError(f"{run_dir}: no checkpoint ({', '.join(names)}) in the run folder")


def run_config(run_dir: str | os.PathLike, opts: Sequence[str] = ()) -> CfgNode:
    """The resolved ``config.yaml`` of a training run folder (``opts`` applied on top)."""
    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        raise InputNotFoundError(f"{run_dir}: not a run folder (no config.yaml)")
    return setup_cfg(str(config), opts)
