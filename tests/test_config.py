"""Every YAML under configs/ merges through setup_cfg and builds its model on CPU."""

import ast
import subprocess
import sys
from unittest import mock

import pytest
import torch
import yaml
from detectron2.modeling import build_model

from sperm_d2.config import ConfigError, apply_epoch_schedule, setup_cfg
from sperm_d2.grading import is_grader  # also registers SpermHeadGrader with detectron2
from sperm_d2.grading.crop import input_channels
from sperm_d2.parts import is_part_segmenter  # also registers SpermPartSegmenter

from .conftest import REPO

MODEL_CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "labels" not in p.parts)


def test_there_are_configs() -> None:
    names = {p.name for p in MODEL_CONFIGS}
    for required in (
        "Base-SpermMaskRCNN-FPN.yaml",
        "sperm_mask_rcnn_R_101_FPN.yaml",
        "sperm_mask_rcnn_R_101_FPN_scratch.yaml",
        "sperm_mask_rcnn_R_50_FPN_cpu.yaml",
    ):
        assert required in names


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=[p.name for p in MODEL_CONFIGS])
def test_config_merges_and_builds_model(path) -> None:
    cfg = setup_cfg(str(path), ["MODEL.DEVICE", "cpu"])
    # the full-field detector finds heads (one class); the part segmenter 5 parts; the others
    # grade good/bad
    classes = 1 if "fields" in path.name else 5 if "parts" in path.name else 2
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == len(cfg.SPERM.CLASSES) == classes
    if is_part_segmenter(cfg):
        check_part_segmenter_builds(cfg)
        return
    if is_grader(cfg):
        check_grader_builds(cfg)
        return
    assert cfg.MODEL.MASK_ON
    model = build_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params > 1_000_000
    # One forward pass in inference mode on a random image proves the model is complete.
    model.eval()
    size = cfg.INPUT.MIN_SIZE_TEST
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 255, (3, size, size), dtype=torch.uint8)}])
    assert "instances" in out[0]


def check_grader_builds(cfg) -> None:
    """The head grader: a forward pass gives class probabilities for a batch of crops."""
    model = build_model(cfg).eval()
    channels = input_channels(cfg.SPERM.GRADER.MASK_MODE)
    size = cfg.SPERM.GRADER.CROP_SIZE
    with torch.no_grad():
        out = model({"images": torch.randint(0, 255, (2, channels, size, size), dtype=torch.uint8)})
    assert out["probs"].shape == (2, 2)
    assert torch.allclose(out["probs"].sum(1), torch.ones(2))


def test_scratch_configs_use_groupnorm_and_train_everything() -> None:
    for name in ("sperm_mask_rcnn_R_101_FPN_scratch.yaml", "sperm_mask_rcnn_R_50_FPN_cpu.yaml"):
        cfg = setup_cfg(str(REPO / "configs" / name))
        assert cfg.MODEL.WEIGHTS == ""
        assert cfg.MODEL.BACKBONE.FREEZE_AT == 0
        assert cfg.MODEL.RESNETS.NORM == "GN" and cfg.MODEL.FPN.NORM == "GN"


def test_paper_config_matches_the_study() -> None:
    cfg = setup_cfg(str(REPO / "configs" / "sperm_mask_rcnn_R_101_FPN.yaml"))
    assert cfg.MODEL.RESNETS.DEPTH == 101
    assert cfg.SOLVER.IMS_PER_BATCH == 4
    assert cfg.SOLVER.MAX_ITER == 30000  # 300 epochs of 100 steps
    assert cfg.INPUT.RANDOM_FLIP == "horizontal" and cfg.SPERM.AUG.VFLIP_PROB == 0.5
    assert cfg.MODEL.WEIGHTS.startswith("https://")


def test_unknown_key_in_file_fails_with_file_and_key(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        '_BASE_: "%s"\nSPERM:\n  NOT_A_KEY: 1\n' % (REPO / "configs/Base-SpermMaskRCNN-FPN.yaml")
    )
    with pytest.raises(ConfigError) as e:
        setup_cfg(str(bad))
    msg = str(e.value)
    assert "bad.yaml" in msg and "SPERM.NOT_A_KEY" in msg and "\n" not in msg


def test_unknown_key_on_command_line_fails_clearly() -> None:
    with pytest.raises(ConfigError, match=r"command line: .*SOLVER.NOT_A_KEY"):
        setup_cfg(None, ["SOLVER.NOT_A_KEY", "3"])
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        setup_cfg(None, ["SOLVER.MAX_ITER"])


def test_a_whole_number_for_a_float_key_is_that_float() -> None:
    """yacs refuses ``1`` for a float key; the command line takes it as 1.0 (ints stay ints,
    other types keep their check)."""
    cfg = setup_cfg(None, ["SPERM.MASK_SCORE_POWER", "1", "SOLVER.BASE_LR", "-0", "SEED", "4"])
    assert cfg.SPERM.MASK_SCORE_POWER == 1.0 and isinstance(cfg.SPERM.MASK_SCORE_POWER, float)
    assert cfg.SOLVER.BASE_LR == 0.0 and cfg.SEED == 4 and isinstance(cfg.SEED, int)
    with pytest.raises(ConfigError, match=r"command line: .*Type mismatch"):
        setup_cfg(None, ["SOLVER.MAX_ITER", "7.5"])


def test_missing_file_fails_clearly(tmp_path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        setup_cfg(str(tmp_path / "nope.yaml"))
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match=r"run: is a folder, not a config file .*config\.yaml"):
        setup_cfg(str(tmp_path / "run"))
    unreadable = tmp_path / "locked.yaml"
    unreadable.write_text("SEED: 1\n")
    with mock.patch("builtins.open", side_effect=PermissionError(13, "Permission denied")):
        with pytest.raises(ConfigError, match=r"locked.yaml: cannot read \(Permission denied\)"):
            setup_cfg(str(unreadable))


def test_overrides_apply_and_cfg_is_frozen() -> None:
    cfg = setup_cfg(
        str(REPO / "configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml"), ["SOLVER.MAX_ITER", "7"]
    )
    assert cfg.SOLVER.MAX_ITER == 7
    assert cfg.is_frozen()


def test_epoch_schedule_derives_iterations() -> None:
    cfg = setup_cfg(
        str(REPO / "configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml"),
        ["SPERM.EPOCHS", "10", "SOLVER.IMS_PER_BATCH", "4", "SPERM.EVAL_EVERY_EPOCHS", "2"],
    )
    out = apply_epoch_schedule(cfg, num_train_images=50)  # 13 iterations per epoch
    assert out.SOLVER.MAX_ITER == 130
    assert out.SOLVER.STEPS == (int(0.67 * 130), int(0.89 * 130))
    assert out.TEST.EVAL_PERIOD == 26
    assert out.SOLVER.WARMUP_ITERS <= 13
    assert out.is_frozen() and cfg.SOLVER.MAX_ITER == 300  # input untouched


def test_epoch_schedule_off_keeps_iterations() -> None:
    cfg = setup_cfg(str(REPO / "configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml"))
    out = apply_epoch_schedule(cfg, num_train_images=50)
    assert out.SOLVER.MAX_ITER == cfg.SOLVER.MAX_ITER and out.SOLVER.STEPS == cfg.SOLVER.STEPS


def test_epoch_schedule_needs_training_images() -> None:
    cfg = setup_cfg(None, ["SPERM.EPOCHS", "3"])
    with pytest.raises(ValueError, match="non-empty training set"):
        apply_epoch_schedule(cfg, num_train_images=0)


def test_detectron2_imports_without_compiled_extension() -> None:
    code = (
        "import detectron2.engine, detectron2.evaluation, detectron2.model_zoo\n"
        "try:\n    from detectron2 import _C\nexcept ImportError:\n    print('no _C')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no _C" in proc.stdout


def test_cuda_device_falls_back_to_cpu_without_gpu() -> None:
    cfg = setup_cfg(None, ["MODEL.DEVICE", "cuda"])
    assert cfg.MODEL.DEVICE == ("cuda" if torch.cuda.is_available() else "cpu")


def _leaves(doc: dict, prefix: str = ""):
    for key, value in doc.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        elif f"{prefix}{key}" != "_BASE_":
            yield f"{prefix}{key}", value


def _plain(value):
    """A YAML value as the CfgNode holds it: strings that are Python literals evaluated (yacs
    does so on merge), lists and tuples alike."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


CHILD_CONFIGS = [p for p in MODEL_CONFIGS if "_BASE_" in yaml.safe_load(p.read_text())]


@pytest.mark.parametrize("path", CHILD_CONFIGS, ids=[p.name for p in CHILD_CONFIGS])
def test_child_config_states_only_differences_from_its_base(path) -> None:
    raw = yaml.safe_load(path.read_text())
    base = setup_cfg(str(path.parent / raw["_BASE_"]))
    restated = []
    for key, value in _leaves(raw):
        node = base
        for part in key.split("."):
            node = node[part]
        if _plain(value) == _plain(node):
            restated.append(f"{key}: {value!r}")
    assert not restated, f"{path.name} restates its base's values: {restated}"


def test_num_classes_follows_sperm_classes_unless_stated() -> None:
    cfg = setup_cfg(None, ["SPERM.CLASSES", "['normal', 'tapered', 'pyriform']"])
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3
    base = str(REPO / "configs/Base-SpermMaskRCNN-FPN.yaml")
    assert setup_cfg(base).MODEL.ROI_HEADS.NUM_CLASSES == 2
    with pytest.raises(ConfigError, match="NUM_CLASSES = 3 but SPERM.CLASSES has 2"):
        setup_cfg(base, ["MODEL.ROI_HEADS.NUM_CLASSES", "3"])


@pytest.mark.parametrize(
    "key,value",
    [
        ("SPERM.INFER_PRECISION", "fp16"),
        ("SPERM.BEST_MODE", "up"),
        ("SPERM.GRADER.MASK_MODE", "alpha"),
        ("SPERM.GRADER.BALANCE", "oversample"),
        ("SPERM.GRADER.TTA", "rot90"),
        ("SPERM.INFER_TTA", "vflip"),
        ("SPERM.INFER_BATCH_SIZE", "-1"),
        ("SPERM.GRADER.CROP_SIZE", "0"),
        ("SPERM.GRADER.HEAD_FRACTION", "1.5"),
        ("SPERM.GRADER.TEST_BATCH_SIZE", "0"),
        ("SPERM.PARTS.CLASS_WEIGHTS", "[1.0, 2.0]"),
        ("SPERM.PARTS.DICE_WEIGHT", "-0.5"),
        ("SPERM.PARTS.LOGIT_BIAS", "[1.0]"),
        ("SPERM.PARTS.TTA", "vflip"),
    ],
)
def test_every_config_value_is_checked_when_the_config_is_built(key, value) -> None:
    """config/validate.py checks them in setup_cfg, in one line naming the key, before any
    model, loader or run folder exists (they were checked where used, some after the run
    folder was made)."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        setup_cfg(None, [key, value])
    assert "\n" not in str(e.value)


def test_config_choices_agree_with_the_modules_that_use_them() -> None:
    from sperm_d2.config.validate import CHOICES
    from sperm_d2.flip_views import VIEWS
    from sperm_d2.grading.model import TTA_VIEWS
    from sperm_d2.precision import PRECISIONS

    assert set(CHOICES["SPERM.GRADER.TTA"]) == set(TTA_VIEWS)
    assert set(CHOICES["SPERM.INFER_TTA"]) == set(VIEWS) == set(CHOICES["SPERM.PARTS.TTA"])
    assert set(CHOICES["SPERM.INFER_PRECISION"]) == set(PRECISIONS)
    for mode in CHOICES["SPERM.GRADER.MASK_MODE"]:
        input_channels(mode)  # every allowed mode is one the crop knows


def check_part_segmenter_builds(cfg) -> None:
    """The part segmenter's config builds a model giving background + part probabilities (of a
    field's 3 colour channels, or of a head crop's 3 and its mask)."""
    model = build_model(cfg).eval()
    channels = 4 if cfg.SPERM.PARTS.INPUT == "head" else 3
    with torch.no_grad():
        probs = model({"images": torch.randint(0, 255, (1, channels, 64, 48)).float()})["probs"]
    assert probs.shape == (1, len(cfg.SPERM.CLASSES) + 1, 64, 48)
