"""Several processes through detectron2's ``launch``: CPU DDP over gloo (which detectron2's DDP
wrapper does not support) and a clean leave of the process group when a worker ends."""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import detectron2.engine.defaults as d2_defaults
import torch
import torch.distributed as dist
from detectron2.engine import launch
from detectron2.utils import comm
from torch import nn


def launch_processes(main_func, num_gpus_per_machine: int, *, args: tuple = (), **kwargs) -> None:
    """detectron2's ``launch`` (same arguments), each worker leaving the process group cleanly.

    ``launch`` returns from a worker with its process group alive; a worker that then exits while
    another still talks over gloo can die in gloo's threads ("terminate called without an active
    exception", SIGABRT), failing a run whose work was done. Here every worker, after
    ``main_func`` returns, waits for the others and destroys the group before it exits.
    """
    launch(
        functools.partial(_run_then_leave, main_func),
        num_gpus_per_machine,
        args=args,
        **kwargs,
    )


def _run_then_leave(main_func, *args) -> None:
    main_func(*args)
    if dist.is_available() and dist.is_initialized():
        comm.synchronize()  # no worker leaves while another still needs the group
        dist.destroy_process_group()


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
