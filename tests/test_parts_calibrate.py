"""Per-class logit biases of the part segmenter chosen on val (sperm_d2.parts.calibrate,
tools/calibrate_parts.py): the search on made-up logits, the model applying them, the refusals.
The tool on a trained run: tests/test_parts_model.py (its train_net run)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from sperm_d2.parts.calibrate import choose_logit_bias, mean_iou, sample_stride

from .conftest import REPO

PARTS_INSTANT = REPO / "configs/quick_schedules/sperm_parts_instant_test.yaml"
NAMES = ["a", "b"]


def _under_called(shift: float = 3.0, n: int = 4000, seed: int = 0):
    """Logits that find every class but call class 2 ``shift`` too low, as a loss that weighted
    it down would: its pixels mostly go to the other classes."""
    rng = np.random.default_rng(seed)
    targets = rng.choice(3, size=n, p=[0.8, 0.1, 0.1])
    logits = 4.0 * np.eye(3, dtype=np.float32)[targets] + rng.normal(0, 1, (n, 3)).astype("f4")
    logits[:, 2] -= shift
    return logits, targets


def test_the_search_moves_an_under_called_class_back() -> None:
    logits, targets = _under_called()
    bias, before, after = choose_logit_bias(logits, targets, NAMES)
    assert bias[0] == 0 and bias[2] >= 2.0
    assert after > before + 20
    assert after == pytest.approx(mean_iou(logits, targets, bias, NAMES))
    # the ideal shift gives about what the search found
    ideal = mean_iou(logits, targets, np.array([0, 0, 3.0]), NAMES)
    assert after >= ideal - 1.0


def test_unscored_classes_and_calibrated_logits_keep_zero() -> None:
    logits, targets = _under_called()
    bias, _, _ = choose_logit_bias(logits, targets, NAMES, scored=["a"])
    assert bias[2] == 0 and bias[0] == 0
    logits[:, 2] += 3.0  # calibrated: little to move (IoU favours rare classes a little)
    bias, before, after = choose_logit_bias(logits, targets, NAMES)
    assert np.abs(bias).max() <= 1.0 and after - before < 1.0


def test_nothing_scored_present_returns_zeros() -> None:
    logits = np.zeros((10, 3), np.float32)
    logits[:, 0] = 5
    bias, before, after = choose_logit_bias(logits, np.zeros(10, np.int64), NAMES)
    assert not bias.any() and np.isnan(before) and np.isnan(after)


def test_sample_stride_keeps_a_budget() -> None:
    assert sample_stride(1024, 1280) == 3  # 146k of 1.3M pixels
    assert sample_stride(96, 96) == 1
    assert sample_stride(1024, 1280, budget=1024 * 1280) == 1


def test_the_model_adds_the_biases_before_the_softmax() -> None:
    from sperm_d2.config import setup_cfg
    from sperm_d2.engine.part_trainer import PartTrainer

    torch.manual_seed(0)
    plain = PartTrainer.build_model(setup_cfg(str(PARTS_INSTANT), ["MODEL.DEVICE", "cpu"]))
    bias = [0.0, 0.0, 0.0, 0.0, 0.0, 50.0]
    opts = ["MODEL.DEVICE", "cpu", "SPERM.PARTS.LOGIT_BIAS", str(bias)]
    biased = PartTrainer.build_model(setup_cfg(str(PARTS_INSTANT), opts))
    biased.load_state_dict(plain.state_dict())  # the biases are config, not weights
    assert "logit_bias" not in plain.state_dict()
    images = torch.rand(1, 3, 24, 24) * 255
    plain.eval(), biased.eval()
    with torch.no_grad():
        p0 = plain({"images": images})["probs"]
        p1 = biased({"images": images})["probs"]
        expected = torch.softmax(plain.logits(images) + torch.tensor(bias).view(1, -1, 1, 1), 1)
    assert torch.allclose(p1, expected, atol=1e-6) and (p1.argmax(1) == 5).all()
    assert not torch.allclose(p0, p1)


def test_the_tool_refuses_a_run_that_is_no_part_segmenter(tmp_path) -> None:
    from sperm_d2.config import setup_cfg

    run = tmp_path / "detector"
    run.mkdir()
    (run / "config.yaml").write_text(setup_cfg(None).dump())
    (run / "model_final.pth").write_bytes(b"")
    cmd = [sys.executable, str(REPO / "tools/calibrate_parts.py"), "--run", str(run)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert "not a part segmenter run" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _part_run(folder, checkpoints: dict):
    """A part run folder of the instant config (no data under its SPERM.DATA_ROOT) holding
    ``checkpoints`` (name -> bytes, or ``None`` for random weights saved by torch)."""
    from detectron2.modeling import build_model

    from sperm_d2.config import setup_cfg

    folder.mkdir()
    cfg = setup_cfg(str(PARTS_INSTANT), ["SPERM.DATA_ROOT", str(folder / "data")])
    (folder / "config.yaml").write_text(cfg.dump())
    for name, data in checkpoints.items():
        if data is None:
            torch.save({"model": build_model(cfg).state_dict()}, folder / name)
        else:
            (folder / name).write_bytes(data)
    return folder


def _calibrate(argv: list[str]):
    from .hostile_inputs import load_tool, run_main

    return run_main(load_tool("calibrate_parts").main, argv)


def _listed(data: object) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(data, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "checkpoints, extra, culprit",
    [
        ({"model_best.pth": b"PK\x03\x04 truncated"}, [], "model_best.pth: the part run's"),
        ({"model_final.pth": b""}, [], "model_final.pth: the part run's checkpoint file is empty"),
        ({"model_final.pth": _listed([1, 2, 3])}, [], "holds a list, not weights"),
        ({"model_final.pth": None}, ["--weights", "{run}/nope.pth"], "nope.pth: --weights file"),
        ({"model_final.pth": None}, ["--weights", "{run}"], "--weights is not a file"),
    ],
    ids=["truncated_best", "empty", "a_list", "weights_missing", "weights_a_folder"],
)
def test_calibrate_parts_refuses_an_unreadable_checkpoint_in_one_line(
    tmp_path, checkpoints, extra, culprit
) -> None:
    """Before: a traceback and exit code 70 (torch's or fvcore's error escaped)."""
    run = _part_run(tmp_path / "run", checkpoints)
    config = (run / "config.yaml").read_bytes()
    res = _calibrate(["--run", str(run), *[a.replace("{run}", str(run)) for a in extra]])
    assert res.exception is None and res.code == 2, (res.exception, res.stderr[-1500:])
    [line] = res.lines("calibrate_parts.py")
    assert culprit in line, line
    assert (run / "config.yaml").read_bytes() == config and not (run / "calibration.json").exists()


def test_calibrate_parts_says_what_is_wrong_with_the_given_dataset(tmp_path) -> None:
    run = _part_run(tmp_path / "run", {"model_final.pth": None})
    res = _calibrate(["--run", str(run), "--dataset", "bogus_split"])
    assert res.exception is None and res.code == 2, (res.exception, res.stderr[-1500:])
    [line] = res.lines("calibrate_parts.py")
    assert "--dataset bogus_split: no such split" in line and "give --dataset" not in line, line
