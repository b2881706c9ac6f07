"""``SpermGraderEnsemble``: ``SPERM.GRADER.ENSEMBLE_SIZE`` head graders trained together as one
model, one checkpoint and one run folder, their class probabilities averaged.

Each member is a :class:`~sperm_d2.grading.model.SpermHeadGrader` with its own random
initialisation and dropout; in training each member's loss reaches only its own weights (the
total is their sum), so the members learn as K independent runs on the same batches would, in one
command. ``tools/infer.py --grader`` and ``evaluate.py --grader`` take its run folder like any
grader's; model selection (``model_best.pth``) is on the ensemble's own val metric.
"""

from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from sperm_d2.grading.model import SpermHeadGrader, adapt_trunk_state


@META_ARCH_REGISTRY.register()
class SpermGraderEnsemble(nn.Module):
    """K :class:`SpermHeadGrader` members (``members.<k>.*`` in the state dict).

    Training returns ``{"loss_cls": sum of the members' losses}`` (each member's gradient is its
    own loss's), each member's loss logged as ``member<k>/loss_cls`` (not ``grader/*``: those are
    evaluation metrics, results.csv rows); evaluation returns
    ``{"probs": (N, K) mean of the members' probabilities}`` (each with its TTA views)."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        size = int(cfg.SPERM.GRADER.ENSEMBLE_SIZE)  # >= 1 (config/validate.py)
        self.members = nn.ModuleList(SpermHeadGrader(cfg) for _ in range(size))

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def adapt_pretrained_state(self, state: dict) -> dict:
        """Pretrained trunk weights (a torchvision ResNet's, a head-part segmenter's encoder) into
        every member; anything else unchanged (see :func:`adapt_trunk_state`)."""
        prefixes = [
            f"members.{k}.{p}" for k, m in enumerate(self.members) for p in m.trunk_prefixes()
        ]
        return adapt_trunk_state(state, prefixes, self.members[0].backbone, self.state_dict())

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """The members' mean class probabilities (N, K) of an (N, C, S, S) batch in 0-255."""
        return torch.stack([m.probabilities(images) for m in self.members]).mean(0)

    def forward(self, batch: dict):
        if not self.training:
            return {"probs": self.probabilities(batch["images"])}
        losses = [m(batch)["loss_cls"] for m in self.members]
        # detectron2 sums every "loss*" entry into the total: the per-member figures go to the
        # event storage as metrics (not losses) so that each counts once
        self._log_members(losses)
        return {"loss_cls": torch.stack(losses).sum()}

    @staticmethod
    def _log_members(losses: list[torch.Tensor]) -> None:
        from detectron2.utils.events import get_event_storage

        try:
            storage = get_event_storage()
        except AssertionError:  # called outside a trainer (no event storage)
            return
        storage.put_scalars(
            **{f"member{k}/loss_cls": float(v.detach()) for k, v in enumerate(losses)},
            smoothing_hint=True,
        )
