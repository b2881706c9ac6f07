"""The grader on a torchvision ResNet trunk (SPERM.GRADER.BACKBONE): ImageNet weights in
torchvision's own layout (a state dict saved here at test time: nothing is downloaded) load into
the trunk through the training checkpointer, for one grader and for every ensemble member; the
mask channel starts neutral; the compact CNN's checkpoints keep their names."""

import pytest
import torch
import torchvision
from detectron2.modeling import build_model

from sperm_d2.config import setup_cfg
from sperm_d2.engine.checkpoint import SpermCheckpointer
from sperm_d2.grading import SpermGraderEnsemble, SpermHeadGrader
from sperm_d2.grading.trunk import TORCHVISION_ARCHS, adapt_imagenet_state

from .conftest import REPO, fine_tune_grader

GRADER_INSTANT = REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml"
IMAGENET_CONFIG = REPO / "configs/sperm_grader_resnet18_imagenet.yaml"


def _grader(*opts: str):
    return build_model(setup_cfg(str(GRADER_INSTANT), ["SPERM.GRADER.BACKBONE", "resnet18", *opts]))


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A torchvision ResNet-18 state dict, as torchvision saves ImageNet weights (random values,
    made here: what matters is the layout)."""
    torch.manual_seed(7)
    net = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # batch-norm statistics away from their defaults, so they must load
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("imagenet") / "resnet18_imagenet.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_imagenet_weights_fill_the_trunk_and_leave_the_head_fresh(imagenet_file) -> None:
    path, state = imagenet_file
    torch.manual_seed(0)
    model = _grader()
    classifier = model.classifier.weight.detach().clone()
    SpermCheckpointer(model).resume_or_load(str(path), resume=False)
    mine = model.state_dict()
    for key, value in state.items():
        if key.startswith("fc."):
            assert f"trunk.{key}" not in mine  # the 1000-class head is not the grader's
        else:
            torch.testing.assert_close(mine[f"trunk.{key}"], value, msg=key)
    assert torch.equal(model.classifier.weight, classifier)  # starts fresh, as it must
    assert model.classifier.out_features == 2
    assert not model.trunk.mask_conv.weight.any()


def test_every_ensemble_member_gets_the_imagenet_trunk(imagenet_file) -> None:
    path, state = imagenet_file
    model = _grader(
        "MODEL.META_ARCHITECTURE", "SpermGraderEnsemble", "SPERM.GRADER.ENSEMBLE_SIZE", "2"
    )
    assert isinstance(model, SpermGraderEnsemble)
    SpermCheckpointer(model).resume_or_load(str(path), resume=False)
    for member in model.members:
        torch.testing.assert_close(
            member.trunk.layer3[1].conv2.weight, state["layer3.1.conv2.weight"]
        )


def test_the_mask_channel_starts_neutral() -> None:
    """With its convolution at zero, the 4-channel grader sees the colour crop as the
    3-channel ImageNet network would: the mask changes nothing until training moves it."""
    torch.manual_seed(1)
    model = _grader().eval()
    x = torch.randint(0, 256, (3, 4, 64, 64)).float()
    y = x.clone()
    y[:, 3] = 255 - y[:, 3]
    with torch.no_grad():
        torch.testing.assert_close(model.logits(x), model.logits(y))
        model.trunk.mask_conv.weight.normal_()
        assert not torch.allclose(model.logits(x), model.logits(y))


def test_without_a_mask_channel_the_trunk_is_torchvisions_own() -> None:
    model = _grader("SPERM.GRADER.MASK_MODE", "suppress")
    assert model.trunk.mask_conv is None and model.trunk.conv1.in_channels == 3


def test_other_weights_pass_unchanged() -> None:
    compact = build_model(setup_cfg(str(GRADER_INSTANT)))
    assert compact.trunk is None and compact.trunk_prefixes() == []
    state = compact.state_dict()
    assert compact.adapt_pretrained_state(state) is state
    # the compact CNN's parameter names are those of checkpoints trained before the trunk
    assert "stem.0.weight" in state and "blocks.0.conv1.0.weight" in state
    # a grader checkpoint (not torchvision's layout) is not renamed for a trunk either
    resnet = _grader()
    own = resnet.state_dict()
    assert resnet.adapt_pretrained_state(own) is own
    assert adapt_imagenet_state({"conv1.weight": 0, "fc.weight": 1}, []) == {
        "conv1.weight": 0,
        "fc.weight": 1,
    }


def test_the_config_lists_every_trunk() -> None:
    from sperm_d2.config import ConfigError
    from sperm_d2.config.validate import CHOICES

    assert set(CHOICES["SPERM.GRADER.BACKBONE"]) == {"compact", "part_unet", *TORCHVISION_ARCHS}
    with pytest.raises(ConfigError, match="SPERM.GRADER.BACKBONE"):
        setup_cfg(str(GRADER_INSTANT), ["SPERM.GRADER.BACKBONE", "vgg16"])
    for arch, channels in TORCHVISION_ARCHS.items():
        model = _grader("SPERM.GRADER.BACKBONE", arch)
        assert model.classifier.in_features == channels


def test_the_imagenet_config_normalises_as_torchvision() -> None:
    cfg = setup_cfg(str(IMAGENET_CONFIG))
    assert cfg.INPUT.FORMAT == "RGB" and cfg.SPERM.GRADER.BACKBONE == "resnet18"
    assert cfg.MODEL.PIXEL_MEAN == pytest.approx([0.485 * 255, 0.456 * 255, 0.406 * 255])
    assert cfg.MODEL.PIXEL_STD == pytest.approx([0.229 * 255, 0.224 * 255, 0.225 * 255])
    model = build_model(cfg)
    assert isinstance(model, SpermHeadGrader)
    assert model.pixel_mean.flatten()[:3].tolist() == pytest.approx(cfg.MODEL.PIXEL_MEAN)


@pytest.mark.slow
def test_train_net_fine_tunes_from_a_local_imagenet_file(tiny_dataset, imagenet_file, tmp_path):
    path, state = imagenet_file
    log, grader = fine_tune_grader(IMAGENET_CONFIG, path, tiny_dataset.root, tmp_path / "r18")
    assert "ImageNet weights" in log
    # learning rate ~0: the trained run holds the file's convolutions (batch-norm statistics move
    # in training mode, so they are not compared)
    trunk = grader.models[0].trunk
    torch.testing.assert_close(trunk.layer2[0].conv1.weight.float(), state["layer2.0.conv1.weight"])
