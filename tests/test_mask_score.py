"""Detection scores weighted by their mask's confidence (SPERM.MASK_SCORE_POWER,
sperm_d2/mask_score.py): the maskness of a mask, and the hook on a detector's mask head."""

import pytest
import torch
from detectron2.modeling import build_model

from sperm_d2.config import ConfigError, setup_cfg
from sperm_d2.mask_score import maskness, use_mask_scoring

from .conftest import REPO

CONFIGS = {
    "standard": REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml",
    "pointrend": REPO / "configs/quick_schedules/sperm_mask_rcnn_pointrend_instant_test.yaml",
}


def test_maskness_is_the_mean_foreground_probability() -> None:
    probs = torch.zeros(3, 1, 4, 4)
    probs[0, 0, :2] = 1.0  # crisp: 1
    probs[1, 0, :2] = 0.6  # unsure foreground, sure background: 0.6
    probs[1, 0, 2:] = 0.4
    # nothing above 0.5 (row 2 stays all zero): no mask, 0
    torch.testing.assert_close(maskness(probs), torch.tensor([1.0, 0.6, 0.0]))


def raw_detections(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and mask probabilities of the model's detections on a fixed random image."""
    image = torch.randint(0, 255, (3, 64, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (inst,) = model.inference([{"image": image.float()}], do_postprocess=False)
    return inst.scores.clone(), inst.pred_masks.clone()


@pytest.mark.parametrize("head", list(CONFIGS))
def test_mask_head_hook_weights_each_score_by_its_maskness(head) -> None:
    # random GN weights score every class ~1/3: a zero threshold makes the heads run
    cfg = setup_cfg(str(CONFIGS[head]), ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    scores, probs = raw_detections(model)
    assert len(scores) > 0 and probs.is_floating_point()
    weight = maskness(probs)
    assert 0 < weight.min() and weight.max() <= 1 and weight.min() < 1

    assert use_mask_scoring(model, 2.0) is model
    rescored, probs_after = raw_detections(model)
    torch.testing.assert_close(probs_after, probs)  # the masks are untouched
    torch.testing.assert_close(rescored, scores * weight**2)
    use_mask_scoring(model, 2.0)  # again: one hook, not two
    torch.testing.assert_close(raw_detections(model)[0], scores * weight**2)
    use_mask_scoring(model, 0.0)  # power 0: the classifier's scores again
    torch.testing.assert_close(raw_detections(model)[0], scores)


def test_predictor_and_trainer_build_the_configured_scoring() -> None:
    from sperm_d2.engine import SpermTrainer
    from sperm_d2.inference import SpermPredictor

    cfg = setup_cfg(str(CONFIGS["standard"]), ["SPERM.MASK_SCORE_POWER", "0.5"])
    for model in (SpermPredictor(cfg).model, SpermTrainer.build_model(cfg)):
        assert model.roi_heads.mask_head._sperm_mask_score_power == 0.5
        assert len(model.roi_heads.mask_head._forward_hooks) == 1


def test_without_power_no_hook_is_added_and_negative_power_is_refused() -> None:
    cfg = setup_cfg(str(CONFIGS["standard"]))
    assert cfg.SPERM.MASK_SCORE_POWER == 0
    model = build_model(cfg)
    use_mask_scoring(model, 0.0)
    assert not model.roi_heads.mask_head._forward_hooks
    with pytest.raises(ConfigError, match=r"SPERM\.MASK_SCORE_POWER = -1\.0, expected >= 0"):
        setup_cfg(str(CONFIGS["standard"]), ["SPERM.MASK_SCORE_POWER", "-1.0"])
