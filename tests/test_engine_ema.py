"""The moving average of the weights (SPERM.EMA_DECAY, sperm_d2/engine/ema.py): its arithmetic,
the swap in and out of the model, and a training run that evaluates and saves it and resumes it."""

import io
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from sperm_d2.config import ConfigError, setup_cfg
from sperm_d2.engine.ema import ModelEMA

from .conftest import REPO, split_opts

INSTANT = REPO / "configs/quick_schedules/sperm_mask_rcnn_pointrend_instant_test.yaml"


def linear(value: float) -> nn.Module:
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(-value)
    model.register_buffer("count", torch.tensor(int(value)))
    return model


def test_average_follows_its_decay_rule() -> None:
    model = linear(0.0)
    ema = ModelEMA(model, decay=0.5)
    expected, updates = None, 0
    for value in (0.0, 4.0, 8.0, 2.0):
        with torch.no_grad():
            model.weight.fill_(value)
            model.count.fill_(int(value))
        d = min(0.5, (1 + updates) / (10 + updates))
        expected = value if expected is None else d * expected + (1 - d) * value
        ema.update()
        updates += 1
        assert ema.state["weight"].item() == pytest.approx(expected)
        assert ema.state["count"].item() == int(value)  # integer buffers are copied, not averaged
    # the decay is capped by (1 + n) / (10 + n) early on, then by the configured decay
    assert ModelEMA(model, 0.999).current_decay() == pytest.approx(0.1)
    ema.updates = 10**6
    assert ema.current_decay() == 0.5


def test_applied_swaps_the_average_in_and_the_own_weights_back() -> None:
    model = linear(1.0)
    ema = ModelEMA(model, decay=0.9)
    with ema.applied():  # nothing averaged yet: the model keeps its weights
        assert model.weight.item() == 1.0
    ema.update()
    with torch.no_grad():
        model.weight.fill_(3.0)
    with ema.applied():
        assert model.weight.item() == 1.0
        with ema.applied():  # nested: still the average, then the average again
            assert model.weight.item() == 1.0
        assert model.weight.item() == 1.0
    assert model.weight.item() == 3.0
    with pytest.raises(RuntimeError, match="boom"):
        with ema.applied():
            raise RuntimeError("boom")
    assert model.weight.item() == 3.0


def test_state_round_trips_through_a_weights_only_load() -> None:
    ema = ModelEMA(linear(2.0), decay=0.9)
    assert ema.state_dict() == {}  # nothing to save before the first update
    ema.update()
    ema.update()
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    fresh = ModelEMA(linear(5.0), decay=0.9)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.updates == 2 and fresh.state["weight"].item() == 2.0


def test_decay_of_one_or_more_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"SPERM\.EMA_DECAY = 1\.0, expected 0 \(off\)"):
        setup_cfg(str(INSTANT), ["SPERM.EMA_DECAY", "1.0"])
    assert setup_cfg(str(INSTANT), ["SPERM.EMA_DECAY", "0.99"]).SPERM.EMA_DECAY == 0.99


def _train(opts: list[str], resume: bool = False) -> None:
    cmd = [sys.executable, str(REPO / "tools/train_net.py"), "--config-file", str(INSTANT)]
    cmd += ["--resume"] * resume + opts
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_training_evaluates_saves_and_resumes_the_average(tiny_dataset, tmp_path) -> None:
    """model_best/model_final hold the average, the periodic checkpoints the raw weights with the
    average beside them, and --resume goes on counting the average's updates."""
    opts = split_opts(tiny_dataset.root, "tinyema") + ["OUTPUT_DIR", str(tmp_path)]
    opts += ["SPERM.EMA_DECAY", "0.9", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.BASE_LR", "0.01"]
    opts += ["SPERM.VAL_LOSS_PERIOD", "-1"]
    _train(opts + ["SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "2"])
    load = lambda name: torch.load(tmp_path / name, weights_only=True)  # noqa: E731
    raw, final, best = load("model_0000003.pth"), load("model_final.pth"), load("model_best.pth")
    assert raw["ema"]["updates"] == final["ema"]["updates"] == 4
    floats = [k for k, v in raw["model"].items() if v.is_floating_point()]
    for k in floats:
        torch.testing.assert_close(final["model"][k], raw["ema"]["state"][k])
    assert any(not torch.equal(raw["model"][k], final["model"][k]) for k in floats)
    # the best model is the average at its own iteration (the evaluation ran on that average)
    for k in floats:
        torch.testing.assert_close(best["model"][k], best["ema"]["state"][k])

    _train(opts + ["SOLVER.MAX_ITER", "6", "TEST.EVAL_PERIOD", "0"], resume=True)
    assert load("model_final.pth")["ema"]["updates"] == 6
