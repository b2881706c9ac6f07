"""The grader on the head-part segmenter's encoder (SPERM.GRADER.BACKBONE part_unet): a head-part
run's checkpoint (made here at test time) fills the trunk through the training checkpointer, for
one grader and for every ensemble member, its decoder and classifier left out; the trunk sees a
crop exactly as the segmenter's encoder does; the config cuts the crop as the head-part config."""

import pytest
import torch
from detectron2.modeling import build_model

from sperm_d2.config import setup_cfg
from sperm_d2.engine.checkpoint import SpermCheckpointer
from sperm_d2.grading import SpermGraderEnsemble
from sperm_d2.grading.part_trunk import adapt_part_state, is_part_state

from .conftest import REPO, fine_tune_grader

GRADER_INSTANT = REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml"
HEAD_PARTS_INSTANT = REPO / "configs/quick_schedules/sperm_head_parts_instant_test.yaml"
PART_UNET_CONFIG = REPO / "configs/sperm_grader_part_unet_cpu.yaml"
HEAD_PARTS_CONFIG = REPO / "configs/sperm_head_parts_cpu.yaml"
CHANNELS = ["[4, 8, 16]"]  # the instant head-part config's SPERM.PARTS.CHANNELS


def _grader(*opts: str):
    cfg = setup_cfg(
        str(GRADER_INSTANT),
        ["SPERM.GRADER.BACKBONE", "part_unet", "SPERM.GRADER.CHANNELS", *CHANNELS, *opts],
    )
    return build_model(cfg)


@pytest.fixture(scope="module")
def head_part_run(tmp_path_factory):
    """A head-part segmenter's checkpoint as its trainer saves it (random weights, GroupNorm
    affine parameters moved off their defaults, so that they must load)."""
    torch.manual_seed(11)
    model = build_model(setup_cfg(str(HEAD_PARTS_INSTANT)))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    path = tmp_path_factory.mktemp("head_parts") / "model_best.pth"
    torch.save({"model": model.state_dict(), "iteration": 5}, path)
    return path, model


def test_a_head_part_run_fills_the_trunk_and_leaves_the_head_fresh(head_part_run) -> None:
    path, segmenter = head_part_run
    torch.manual_seed(0)
    model = _grader()
    classifier = model.classifier.weight.detach().clone()
    SpermCheckpointer(model).resume_or_load(str(path), resume=False)
    mine = model.state_dict()
    for key, value in segmenter.state_dict().items():
        if key.startswith("down."):
            torch.testing.assert_close(mine[f"trunk.{key}"], value, msg=key)
        else:  # decoder and 1x1 classifier: the segmenter's, not the grader's
            assert f"trunk.{key}" not in mine
    assert torch.equal(model.classifier.weight, classifier)
    assert model.classifier.in_features == 16


def test_every_ensemble_member_gets_the_encoder(head_part_run) -> None:
    path, segmenter = head_part_run
    model = _grader(
        "MODEL.META_ARCHITECTURE", "SpermGraderEnsemble", "SPERM.GRADER.ENSEMBLE_SIZE", "2"
    )
    assert isinstance(model, SpermGraderEnsemble)
    SpermCheckpointer(model).resume_or_load(str(path), resume=False)
    for member in model.members:
        torch.testing.assert_close(member.trunk.down[2][3].weight, segmenter.down[2][3].weight)


def test_the_trunk_sees_a_crop_as_the_segmenters_encoder(head_part_run) -> None:
    """Same normalisation (colour by the pixel mean/std, the mask to -1/+1) and same levels: the
    loaded trunk's features of a crop are the segmenter's deepest encoder level's."""
    path, segmenter = head_part_run
    model = _grader().eval()
    SpermCheckpointer(model).resume_or_load(str(path), resume=False)
    segmenter.eval()
    seen = {}
    model.trunk.register_forward_hook(lambda m, i, o: seen.__setitem__("grader", o))
    segmenter.down[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("segmenter", o))
    crop = torch.randint(0, 256, (2, 4, 32, 32)).float()
    crop[:, 3] = (crop[:, 3] > 127).float() * 255
    with torch.no_grad():
        model.logits(crop)
        segmenter.scaled_logits(crop)
    torch.testing.assert_close(seen["grader"].float(), seen["segmenter"].float())


def test_other_weights_pass_unchanged(head_part_run) -> None:
    model = _grader()
    own = model.state_dict()  # resuming or fine-tuning a part_unet grader
    assert not is_part_state(own) and model.adapt_pretrained_state(own) is own
    compact = build_model(setup_cfg(str(GRADER_INSTANT)))
    assert compact.trunk_prefixes() == []
    _, segmenter = head_part_run
    state = segmenter.state_dict()
    assert is_part_state(state)
    # a pretrained file that fits another backbone (or another width) fails, in one line, instead
    # of training from a random trunk with a warning
    with pytest.raises(ValueError, match="head-part segmenter's checkpoint .*'compact'"):
        compact.adapt_pretrained_state(state)
    resnet = build_model(setup_cfg(str(GRADER_INSTANT), ["SPERM.GRADER.BACKBONE", "resnet18"]))
    with pytest.raises(ValueError, match="part_unet\\), not for this grader's backbone 'resnet18'"):
        resnet.adapt_pretrained_state(state)
    wider = _grader("SPERM.GRADER.CHANNELS", "[8, 16, 32]")
    with pytest.raises(ValueError, match=r"trunk.down.0.0.weight is \(4, 4, 3, 3\) in the file"):
        wider.adapt_pretrained_state(state)
    assert adapt_part_state({"down.0.0.weight": 1}, ["trunk."]) == {"down.0.0.weight": 1}


def test_the_config_cuts_the_crop_as_the_head_part_config() -> None:
    grader = setup_cfg(str(PART_UNET_CONFIG)).SPERM.GRADER
    parts = setup_cfg(str(HEAD_PARTS_CONFIG)).SPERM.PARTS
    assert grader.BACKBONE == "part_unet" and grader.MASK_MODE == "channel"
    assert grader.CROP_SIZE == parts.CROP_SIZE
    assert grader.HEAD_FRACTION == pytest.approx(parts.HEAD_FRACTION)
    assert list(grader.CHANNELS) == list(parts.CHANNELS)


@pytest.mark.slow
def test_train_net_fine_tunes_from_a_head_part_run(tiny_dataset, head_part_run, tmp_path):
    path, segmenter = head_part_run
    log, grader = fine_tune_grader(
        PART_UNET_CONFIG, path, tiny_dataset.root, tmp_path / "partunet",
        "SPERM.GRADER.CHANNELS", *CHANNELS,
    )  # fmt: skip
    assert "head-part segmenter's encoder" in log
    # learning rate ~0: the trained run holds the segmenter's convolutions
    trunk = grader.models[0].trunk
    torch.testing.assert_close(trunk.down[1][0].weight.float(), segmenter.down[1][0].weight)
