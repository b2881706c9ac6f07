"""An exponential moving average of the weights during training (``SPERM.EMA_DECAY``).

After every step ``ema = d * ema + (1 - d) * weights`` over the model's floating-point state
(parameters and buffers; integer buffers are copied), with ``d = min(EMA_DECAY, (1 + n) /
(10 + n))`` after ``n`` updates (TensorFlow's ``ExponentialMovingAverage`` with
``num_updates``): early on the average follows the weights closely, later it spans about
``1 / (1 - d)`` steps. It smooths the last iterations' noise out of the weights a run is used
by, at no inference cost.

Where the average is used (:class:`~sperm_d2.engine.trainer.SpermTrainer`): evaluation rounds
during training (so ``model_best.pth`` is chosen by the average's val metric), and the weights
saved as ``model_best*.pth`` and ``model_final.pth`` (what inference loads). Periodic
checkpoints keep the raw weights as ``model`` and the average as ``ema``, so ``--resume`` goes on
with both.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from detectron2.engine import HookBase
from torch import nn

__all__ = ["EMAUpdate", "ModelEMA", "bare"]


def bare(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel/DataParallel wrapper (itself otherwise)."""
    return getattr(model, "module", model)


class ModelEMA:
    """The moving average of ``model``'s state, started from the weights of its first update.

    It is a checkpointable (``state_dict`` / ``load_state_dict``: tensors and an int, so it loads
    under ``torch.load(weights_only=True)``); a state of ``{}`` means no update yet.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay!r}: expected 0 < decay < 1")
        self.model = bare(model)
        self.decay = float(decay)
        self.updates = 0
        self.state: dict[str, torch.Tensor] = {}

    def current_decay(self) -> float:
        """The decay of the next update (smaller during the first updates)."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current state into the average (or start it there)."""
        current = self.model.state_dict()
        if not self.state:
            self.state = {
                k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                for k, v in current.items()
            }
        else:
            d = self.current_decay()
            floats = [k for k, v in current.items() if v.is_floating_point()]
            torch._foreach_lerp_(
                [self.state[k] for k in floats], [current[k].float() for k in floats], 1.0 - d
            )
            for k, v in current.items():
                if not v.is_floating_point():
                    self.state[k].copy_(v)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones again after it
        (also after an exception); without any update yet, its own ones throughout."""
        if not self.state:
            yield
            return
        own = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.state)
        try:
            yield
        finally:
            self.model.load_state_dict(own)

    def state_dict(self) -> dict:
        if not self.state:
            return {}
        return {"updates": int(self.updates), "state": dict(self.state)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.updates = int(state_dict.get("updates", 0))
        self.state = {k: v.clone() for k, v in state_dict.get("state", {}).items()}


class EMAUpdate(HookBase):
    """Update ``ema`` after every training step (before the hooks that save or evaluate)."""

    def __init__(self, ema: ModelEMA) -> None:
        self._ema = ema

    def after_step(self) -> None:
        self._ema.update()
