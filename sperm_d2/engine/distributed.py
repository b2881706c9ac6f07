"""Multi-process training on CPU (gloo), which detectron2's DDP wrapper does not support."""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import detectron2.engine.defaults as d2_defaults
import torch
from torch import nn


@contextlib.contextmanager
def cpu_ddp_support() -> Iterator[None]:
    """Let ``DefaultTrainer.__init__`` wrap a CPU model in DistributedDataParallel.

    detectron2's ``create_ddp_model`` always passes ``device_ids=[local_rank]``, which PyTorch
    rejects for CPU modules. Inside this context it passes ``device_ids=None`` for a CPU model
    (PyTorch's documented form for CPU DDP over gloo) and is unchanged for GPU models.
    """
    original = d2_defaults.create_ddp_model

    @functools.wraps(original)
    def create_ddp_model(model: nn.Module, **kwargs):
        if _on_cpu(model):
            kwargs.setdefault("device_ids", None)
        return original(model, **kwargs)

    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


def _on_cpu(model: nn.Module) -> bool:
    param = next(model.parameters(), None)
    return param is None or param.device == torch.device("cpu")
