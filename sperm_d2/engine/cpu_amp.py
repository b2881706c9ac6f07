"""``CPUAutocastTrainer``: detectron2's training step with the forward pass under CPU bf16 autocast.

detectron2's ``AMPTrainer`` is CUDA-only (``torch.cuda.amp`` autocast and ``GradScaler``, and an
assertion that CUDA is there). bf16 keeps fp32's exponent range, so the CPU needs no gradient
scaler: the step stays ``SimpleTrainer.run_step`` itself, with the model's call (forward and
losses) under autocast and the backward pass and optimizer step outside
(:func:`sperm_d2.precision.autocast_forward`). Its ``state_dict`` is SimpleTrainer's (the
optimizer): a checkpoint holds no ``grad_scaler``.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

from detectron2.engine import SimpleTrainer

from sperm_d2.precision import autocast_forward


class CPUAutocastTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose every step calls the model under CPU bf16 autocast."""

    def run_step(self) -> None:
        with autocast_forward(self.model):
            super().run_step()

    @classmethod
    def replacing(cls, trainer: SimpleTrainer) -> "CPUAutocastTrainer":
        """The CPU bf16 variant of the trainer ``DefaultTrainer.__init__`` built (its
        ``AMPTrainer``): the same model, data loader, optimizer and settings."""
        new = cls(
            trainer.model,
            trainer.data_loader,
            trainer.optimizer,
            gather_metric_period=trainer.gather_metric_period,
            zero_grad_before_forward=trainer.zero_grad_before_forward,
            async_write_metrics=trainer.async_write_metrics,
        )
        trainer.concurrent_executor.shutdown(wait=False)  # the replaced one never runs a step
        return new


@contextlib.contextmanager
def quiet_cuda_grad_scaler() -> Iterator[None]:
    """Hide the two warnings ``AMPTrainer.__init__`` gives on a machine without CUDA (its
    ``torch.cuda.amp.GradScaler`` is deprecated and disables itself): that trainer is replaced by
    :class:`CPUAutocastTrainer` before any step. Every other warning still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", FutureWarning
        )
        warnings.filterwarnings(
            "ignore", r"torch\.cuda\.amp\.GradScaler is enabled, but CUDA is not available"
        )
        yield
