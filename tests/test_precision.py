"""CPU bf16 (sperm_d2.precision): what "auto" resolves to, autocast of the forward pass only,
fp32 outputs, and bf16 through the trainer (detector and grader, with resume) and inference."""

import json
import logging

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from sperm_d2 import precision
from sperm_d2.config import ConfigError, setup_cfg
from sperm_d2.precision import (
    autocast_forward,
    check_precision,
    cpu_has_native_bf16,
    to_fp32,
    train_bf16,
    use_bf16,
)
from sperm_d2.roi_align import SpermROIAlign

from .conftest import REPO, split_opts

DETECTOR = str(REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml")
GRADER = str(REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml")


@pytest.fixture
def native(monkeypatch):
    """Set what the CPU is said to support: ``native(True)`` / ``native(False)``."""

    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: value)

    return set_native


@pytest.mark.parametrize(
    "parity, has_native, expected",
    [(False, True, False), (False, False, False), (True, True, True), (True, False, False)],
)
def test_auto_is_bf16_only_with_native_support_and_shown_parity(
    monkeypatch, native, parity, has_native, expected
):
    native(has_native)
    monkeypatch.setattr(precision, "BF16_PARITY_SHOWN", parity)
    assert use_bf16("auto", "cpu") is expected
    assert use_bf16("bf16", "cpu") is True  # asked for: on, even if emulated
    assert use_bf16("fp32", "cpu") is False


def test_auto_is_bf16_where_native_now_that_parity_is_recorded(native):
    # setting this is a claim about accuracy: the parity numbers are in RESULTS.md
    assert precision.BF16_PARITY_SHOWN is True
    assert "bench_bf16_parity.py" in (REPO / "benchmarks" / "RESULTS.md").read_text()
    native(True)
    assert use_bf16("auto", "cpu") is True
    native(False)
    assert use_bf16("auto", "cpu") is False


def test_gpu_and_unknown_values(native):
    native(True)
    assert use_bf16("bf16", "cuda") is False and use_bf16("bf16", "cuda:1") is False
    assert train_bf16(True, "cpu") and not train_bf16(True, "cuda") and not train_bf16(False, "cpu")
    with pytest.raises(ValueError, match="SPERM.INFER_PRECISION = 'on': use one of auto, bf16"):
        check_precision("on")
    with pytest.raises(ValueError):
        use_bf16("fp16", "cpu")


@pytest.mark.parametrize(
    "caps, expected",
    [
        ({"avx512_bf16": True, "amx_bf16": False}, True),
        ({"avx512_bf16": False, "amx_bf16": True}, True),
        ({"bf16": True, "architecture": "arm64"}, True),
        ({"avx2": True, "avx512_bf16": False}, False),
        ({}, False),
        (RuntimeError("cpuinfo failed"), False),
    ],
)
def test_native_bf16_detection(monkeypatch, caps, expected):
    def get_capabilities():
        if isinstance(caps, Exception):
            raise caps
        return caps

    monkeypatch.setattr(torch.cpu, "get_capabilities", get_capabilities)
    cpu_has_native_bf16.cache_clear()
    try:
        assert cpu_has_native_bf16() is expected
    finally:
        cpu_has_native_bf16.cache_clear()


class _Probe(torch.nn.Module):
    """A linear layer that records whether autocast was on during its forward."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.fail = fail
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x):
        y = self.linear(x)
        self.seen.append((torch.is_autocast_enabled("cpu"), y.dtype))
        if self.fail:
            raise RuntimeError("boom")
        return y.float().sum()


def test_autocast_forward_covers_the_forward_only():
    probe = _Probe()
    with autocast_forward(probe):
        assert not torch.is_autocast_enabled("cpu")
        loss = probe(torch.randn(2, 4))
        # the backward pass (and the optimizer step) run after the call: outside autocast
        assert not torch.is_autocast_enabled("cpu")
        loss.backward()
    assert probe.seen == [(True, torch.bfloat16)]
    assert probe.linear.weight.grad.dtype == torch.float32
    assert not probe._forward_hooks and not probe._forward_pre_hooks
    probe(torch.randn(2, 4))  # outside the block: fp32
    assert probe.seen[-1] == (False, torch.float32)


def test_autocast_forward_ends_when_the_forward_raises():
    probe = _Probe(fail=True)
    with pytest.raises(RuntimeError, match="boom"), autocast_forward(probe):
        probe(torch.randn(2, 4))
    assert probe.seen == [(True, torch.bfloat16)]
    assert not torch.is_autocast_enabled("cpu")


def test_to_fp32_converts_tensors_instances_and_boxes():
    inst = Instances((8, 8))
    inst.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, 4.0, 4.0]], dtype=torch.bfloat16))
    inst.scores = torch.tensor([0.7], dtype=torch.bfloat16)
    inst.pred_classes = torch.tensor([1])
    inst.pred_masks = torch.ones(1, 8, 8, dtype=torch.bool)
    out = to_fp32({"instances": inst, "x": [torch.ones(1, dtype=torch.bfloat16)]})
    got = out["instances"]
    assert got.scores.dtype == torch.float32 and got.pred_boxes.tensor.dtype == torch.float32
    assert got.pred_classes.dtype == torch.int64 and got.pred_masks.dtype == torch.bool
    assert out["x"][0].dtype == torch.float32
    assert to_fp32(torch.ones(1, dtype=torch.float64)).dtype == torch.float64
    assert float(got.scores[0]) == pytest.approx(0.69921875)  # 0.7 as bf16 holds it


def _train_opts(tiny_dataset, out, prefix: str, max_iter: int) -> list[str]:
    return [
        *split_opts(tiny_dataset.root, prefix),
        "SOLVER.AMP.ENABLED",
        "True",
        "SPERM.INFER_PRECISION",
        "bf16",
        "SOLVER.MAX_ITER",
        str(max_iter),
        "OUTPUT_DIR",
        str(out),
        "SEED",
        "3",
    ]


def _conv_output_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    """Record the output dtype of the model's first convolution at every call."""
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[torch.dtype] = []
    conv.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    return seen


def _train(cfg, resume: bool = False):
    from sperm_d2.engine.cpu_amp import CPUAutocastTrainer
    from sperm_d2.engine.trainers import trainer_class

    trainer = trainer_class(cfg)(cfg)
    assert type(trainer._trainer) is CPUAutocastTrainer
    # on the CPU the grader trains in channels-last memory format (measured faster), the
    # detector does not (it was not faster)
    convs = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    conv = next(m for m in convs if m.kernel_size[0] > 1)  # 1x1 weights fit both layouts
    channels_last = cfg.MODEL.META_ARCHITECTURE == "SpermHeadGrader"
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert conv.weight.is_contiguous() is not channels_last
    seen = _conv_output_dtypes(trainer.model)
    trainer.resume_or_load(resume=resume)
    start = trainer.start_iter
    trainer.train()
    return trainer, start, seen


@pytest.mark.parametrize("has_native", [True, False])
def test_amp_trains_bf16_only_on_a_cpu_with_native_bf16(
    tiny_dataset, tmp_path, native, caplog, has_native
):
    """Emulated bf16 trains slower than fp32: there AMP resolves to fp32, said in the log and in
    the resolved config."""
    from sperm_d2.engine.training import prepare_config

    native(has_native)
    with caplog.at_level(logging.WARNING, logger="sperm_d2.engine.training"):
        cfg = prepare_config(GRADER, _train_opts(tiny_dataset, tmp_path, "tinyamp", 2))
    assert cfg.SOLVER.AMP.ENABLED is has_native
    said = any("training in fp32" in r.getMessage() for r in caplog.records)
    assert said is not has_native
    # on a GPU AMP stays detectron2's own (fp16 with a gradient scaler)
    assert train_bf16(True, "cuda") is False


def test_the_grader_config_trains_with_amp():
    """bf16 grader training was shown as accurate as fp32 over several seeds (RESULTS.md)."""
    assert setup_cfg(str(REPO / "configs/sperm_grader_cpu.yaml")).SOLVER.AMP.ENABLED is True
    assert "--grader-seeds" in (REPO / "benchmarks" / "RESULTS.md").read_text()


@pytest.mark.slow
def test_detector_trains_in_bf16_evaluates_and_resumes(tiny_dataset, tmp_path, native):
    from sperm_d2.engine.training import prepare_config

    native(True)  # emulated on a CPU without it: slower, same path

    opts = _train_opts(tiny_dataset, tmp_path, "tinybf16", max_iter=2)
    trainer, start, seen = _train(prepare_config(DETECTOR, opts))
    assert start == 0
    # training steps run in bf16; evaluation too (SPERM.INFER_PRECISION bf16)
    assert seen and set(seen) == {torch.bfloat16}
    state = torch.load(tmp_path / "model_final.pth", weights_only=True)
    inner = state["trainer"]["_trainer"]  # SimpleTrainer state: the optimizer, no grad scaler
    assert "optimizer" in inner and "grad_scaler" not in inner
    metrics = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert all(np.isfinite(m["total_loss"]) for m in metrics if "total_loss" in m)
    assert any("segm/AP" in m for m in metrics) and any("validation_loss" in m for m in metrics)
    # resume: the optimizer state and iteration come back, training goes on in bf16
    opts = _train_opts(tiny_dataset, tmp_path, "tinybf16", max_iter=4)
    trainer, start, seen = _train(prepare_config(DETECTOR, opts), resume=True)
    assert start == 2 and trainer.iter == 4  # detectron2 leaves iter at max_iter when done
    assert set(seen) == {torch.bfloat16}


@pytest.mark.slow
def test_grader_trains_in_bf16(tiny_dataset, tmp_path, native):
    from sperm_d2.engine.training import prepare_config

    native(True)

    opts = _train_opts(tiny_dataset, tmp_path, "tinybf16grader", max_iter=6)
    trainer, _, seen = _train(prepare_config(GRADER, opts))
    assert seen and set(seen) == {torch.bfloat16}
    results = trainer._last_eval_results["grader"]  # evaluated in bf16: numpy probabilities
    assert 0.0 <= results["accuracy"] <= 1.0 and np.isfinite(results["loss"])


def test_a_bad_precision_fails_before_the_run(tiny_dataset, tmp_path):
    from sperm_d2.engine.training import prepare_config

    opts = _train_opts(tiny_dataset, tmp_path, "tinybadprec", 2)
    opts[opts.index("SPERM.INFER_PRECISION") + 1] = "fp16"
    with pytest.raises(ConfigError, match="SPERM.INFER_PRECISION = 'fp16'"):
        prepare_config(DETECTOR, opts)


def _predictors(precisions):
    """Detector predictors sharing one set of random weights, one per precision."""
    from sperm_d2.inference import SpermPredictor

    torch.manual_seed(0)
    preds = []
    for p in precisions:
        # Random GN weights score every class ~1/3: a zero threshold makes the heads run.
        pred = SpermPredictor(setup_cfg(DETECTOR, ["SPERM.INFER_PRECISION", p]), score_threshold=0)
        if preds:
            pred.model.load_state_dict(preds[0].model.state_dict())
        preds.append(pred)
    return preds


def test_predictor_in_bf16_returns_fp32_numpy(tiny_dataset):
    import cv2
    from detectron2.data import DatasetCatalog

    fp32, bf16 = _predictors(["fp32", "bf16"])
    assert (fp32.bf16, bf16.bf16) == (False, True)
    assert any(isinstance(m, SpermROIAlign) for m in bf16.model.modules())
    path = DatasetCatalog.get(tiny_dataset.names["val"])[0]["file_name"]
    image = cv2.imread(path)
    a, b = fp32(image), bf16(image)
    assert len(b) > 0
    n, (h, w) = len(b), image.shape[:2]
    assert b.scores.dtype == np.float32 and b.scores.shape == (n,)
    assert b.boxes.dtype == np.float32 and b.boxes.shape == (n, 4)
    assert b.masks.dtype == bool and b.masks.shape == (n, h, w)
    assert b.classes.dtype == np.int64
    # the same model: bf16 finds nearly the same detections with nearly the same scores
    assert abs(len(a) - len(b)) <= max(2, len(a) // 10)
    assert abs(float(a.scores[0]) - float(b.scores[0])) < 0.05


def test_grader_in_bf16_returns_fp32_p_bad(tmp_path, native):
    from detectron2.modeling import build_model

    from sperm_d2.inference.grader import HeadGrader

    cfg = setup_cfg(GRADER, ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    weights = tmp_path / "grader.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    masks = np.zeros((3, 64, 64), bool)
    masks[0, 10:20, 10:30] = masks[1, 30:40, 20:45] = masks[2, 45:60, 40:52] = True
    fp32 = HeadGrader(cfg, weights, precision="fp32")
    bf16 = HeadGrader(cfg, weights, precision="bf16")
    assert (fp32.bf16, bf16.bf16) == (False, True)
    native(False)
    assert HeadGrader(cfg, weights).bf16 is False  # the config's "auto": fp32 without native bf16
    native(True)
    assert HeadGrader(cfg, weights).bf16 is True
    p32, p16 = fp32.probabilities(image, masks), bf16.probabilities(image, masks)
    assert p16.dtype == np.float32 and p16.shape == p32.shape == (3, 2)
    np.testing.assert_allclose(p16, p32, atol=0.05)
