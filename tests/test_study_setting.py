"""The study-setting helpers of bench_train.py --study: synthetic batch, FrozenBN calibration,
channels-last (tiny R-18 models at 128 px, CPU, seconds)."""

import math

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from sperm_d2.benchmark.study_setting import (
    calibrate_frozen_bn,
    gemm_peak,
    step_flops,
    synthetic_batch,
    use_channels_last,
)
from sperm_d2.config import setup_cfg

from .conftest import REPO

CLASSES = ["good", "bad"]
R18 = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.DEVICE", "cpu"]
SMALL_HEADS = ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "200"]


def _model(config: str, opts=()):
    cfg = setup_cfg(str(REPO / "configs" / config), ["MODEL.WEIGHTS", "", *R18, *opts])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    return model


def test_synthetic_batch_is_a_training_input():
    batch = synthetic_batch(CLASSES, num_images=2, size=96, seed=3)
    assert len(batch) == 2
    for item in batch:
        assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 96, 96)
        inst = item["instances"]
        assert len(inst) >= 1 and inst.image_size == (96, 96)
        assert set(inst.gt_classes.tolist()) <= {0, 1}
        assert len(inst.gt_masks) == len(inst)
        assert (inst.gt_boxes.tensor[:, 2:] > inst.gt_boxes.tensor[:, :2]).all()
    again = synthetic_batch(CLASSES, num_images=2, size=96, seed=3)
    assert torch.equal(batch[0]["image"], again[0]["image"])  # seeded: the same batch again


def test_calibrated_frozen_bn_normalises_each_layer_and_training_forward_is_finite():
    model = _model("sperm_mask_rcnn_R_101_FPN.yaml", SMALL_HEADS)
    batch = synthetic_batch(CLASSES, num_images=2, size=128)
    layers = [m for m in model.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert calibrate_frozen_bn(model, batch) == len(layers) > 0

    outputs = []
    # a clone: the blocks apply their ReLU in place on the norm's output
    handles = [m.register_forward_hook(lambda m, i, o: outputs.append(o.clone())) for m in layers]
    with torch.no_grad():
        model.backbone(model.preprocess_image(batch).tensor)
    for h in handles:
        h.remove()
    # every layer hands on zero-mean, unit-variance channels on the batch it was set from
    for out in outputs:
        mean = out.mean(dim=(0, 2, 3))
        var = out.var(dim=(0, 2, 3), unbiased=False)
        live = var > 1e-6  # channels a ReLU zeroed for every pixel stay 0
        assert mean.abs().max() < 1e-3
        assert torch.allclose(var[live], torch.ones_like(var[live]), atol=1e-2)

    with EventStorage():
        losses = model(batch)
        loss = sum(losses.values())
        loss.backward()
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    # ordinary first losses (random FrozenBN weights give 1e3-1e5 at R-101, then Inf/NaN)
    assert loss.item() < 20, losses


def test_calibration_leaves_a_groupnorm_model_alone():
    model = _model("sperm_mask_rcnn_R_101_FPN_scratch.yaml")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert calibrate_frozen_bn(model, synthetic_batch(CLASSES, num_images=1, size=64)) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("config", ["sperm_mask_rcnn_R_101_FPN_scratch.yaml"])
def test_channels_last_is_a_layout_only(config):
    model = _model(config)
    batch = synthetic_batch(CLASSES, num_images=1, size=64)
    images = model.preprocess_image(batch).tensor
    with torch.no_grad():
        ref = model.backbone(images)
        use_channels_last(model)
        assert model.backbone.bottom_up.stem.conv1.weight.is_contiguous(
            memory_format=torch.channels_last
        )
        out = model.backbone(images)
    for name, feature in ref.items():
        assert out[name].is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(out[name], feature, rtol=1e-4, atol=1e-4), name


def test_step_flops_counts_forward_and_backward_products() -> None:
    """A linear layer's step: 2*B*I*O FLOPs forward, as much again backward for each gradient
    autograd computes (weight; input too when it needs one); element-wise work is not counted."""
    layer = torch.nn.Linear(32, 16)
    x = torch.randn(8, 32)
    assert step_flops(lambda: layer(x).sum().backward()) == 4 * 8 * 32 * 16
    x.requires_grad_(True)

    def step():
        torch.relu(layer(x)).sum().backward()

    assert step_flops(step) == 6 * 8 * 32 * 16
    assert layer.weight.grad is not None  # the step ran


def test_gemm_peak_is_a_finite_rate() -> None:
    rate = gemm_peak(torch.float32, repeats=1)
    assert math.isfinite(rate) and rate > 1e8  # any CPU does 0.1 GFLOP/s
