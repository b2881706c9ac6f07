"""The grader's loss: the generalized cross-entropy (SPERM.GRADER.GCE_Q) for mislabelled heads."""

import pytest
import torch

from sperm_d2.config import setup_cfg
from sperm_d2.grading import SpermHeadGrader

from .conftest import REPO, grader_batch

GRADER_INSTANT = REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml"


def test_the_generalized_cross_entropy_is_bounded_and_tends_to_the_log_loss() -> None:
    torch.manual_seed(4)
    batch = grader_batch()

    def loss(q: float, smoothing: float = 0.0) -> torch.Tensor:
        cfg = setup_cfg(
            str(GRADER_INSTANT),
            ["SPERM.GRADER.GCE_Q", str(q), "SPERM.GRADER.DROPOUT", "0.0"],
        )
        torch.manual_seed(5)
        return SpermHeadGrader(cfg).train()(batch)["loss_cls"]

    ce = loss(0.0)
    torch.testing.assert_close(loss(1e-4), ce, rtol=1e-3, atol=1e-4)  # q -> 0: cross-entropy
    assert 0 < loss(0.7) < ce  # (1 - p^q) / q < -log p
    # q = 1 is the mean absolute error of the true class: at most 1 per head, however wrong
    torch.manual_seed(5)
    model = SpermHeadGrader(setup_cfg(str(GRADER_INSTANT), ["SPERM.GRADER.DROPOUT", "0.0"]))
    p = torch.softmax(model.train().logits(batch["images"]), 1)
    torch.testing.assert_close(loss(1.0), (1 - p[torch.arange(6), batch["labels"]]).mean())
    with pytest.raises(Exception, match="GCE_Q"):
        setup_cfg(str(GRADER_INSTANT), ["SPERM.GRADER.GCE_Q", "1.5"])
