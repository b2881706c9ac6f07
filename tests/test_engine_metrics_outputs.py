"""metrics.json -> results.csv and plots; early-stopping bookkeeping; writer period."""

import csv
import json

import pytest

from sperm_d2.config import setup_cfg
from sperm_d2.engine.early_stop import EarlyStopping
from sperm_d2.engine.metrics_outputs import read_metrics, write_results_csv
from sperm_d2.engine.plots import AP_PNG, LOSS_PNG, VAL_LOSS_PNG, plot_training
from sperm_d2.engine.trainer import val_loss_period


def _write_metrics(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"iteration": 9, "tot')


ROWS = [
    {"iteration": 4, "total_loss": 2.0, "loss_cls": 0.5, "lr": 0.01},
    {
        "iteration": 9,
        "total_loss": 1.5,
        "loss_cls": 0.4,
        "validation_loss": 1.8,
        "val_loss_cls": 0.6,
    },
    {"iteration": 9, "segm/AP50": 10.0, "segm/AP-good": 12.0, "pixellib/mAP50": 0.2},
    {"iteration": 14, "total_loss": 1.2, "loss_cls": 0.3},
    # a resumed run repeats iteration 9 and 14; the later lines win
    {"iteration": 9, "segm/AP50": 11.0, "pixellib/mAP50": 0.25},
    {"iteration": 19, "segm/AP50": 30.0, "pixellib/mAP50": 0.5, "validation_loss": 1.1},
]


def test_read_metrics_merges_iterations_and_skips_a_cut_line(tmp_path) -> None:
    _write_metrics(tmp_path / "metrics.json", ROWS)
    m = read_metrics(tmp_path / "metrics.json")
    assert sorted(m) == [4, 9, 14, 19]
    assert m[9]["segm/AP50"] == 11.0 and m[9]["segm/AP-good"] == 12.0 and m[9]["total_loss"] == 1.5
    assert read_metrics(tmp_path / "missing.json") == {}


def test_results_csv_has_one_row_per_evaluation(tmp_path) -> None:
    _write_metrics(tmp_path / "metrics.json", ROWS)
    n = write_results_csv(read_metrics(tmp_path / "metrics.json"), tmp_path / "results.csv")
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert n == 2 and [r["iteration"] for r in rows] == ["9", "19"]
    assert rows[0]["segm/AP50"] == "11" and rows[0]["validation_loss"] == "1.8"
    assert rows[1]["segm/AP-good"] == "" and rows[1]["pixellib/mAP50"] == "0.5"
    assert "total_loss" not in rows[0]


def test_plots_are_written_and_empty_figures_skipped(tmp_path) -> None:
    _write_metrics(tmp_path / "metrics.json", ROWS)
    files = plot_training(read_metrics(tmp_path / "metrics.json"), tmp_path)
    assert {p.name for p in files} == {LOSS_PNG, VAL_LOSS_PNG, AP_PNG}
    for p in files:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    only_loss = plot_training({3: {"total_loss": 1.0}}, tmp_path / "b")
    assert [p.name for p in only_loss] == [LOSS_PNG]


def test_early_stopping_counts_evaluations_without_improvement() -> None:
    hook = EarlyStopping(10, "segm/AP50", "max", patience=2)
    assert not hook.update(10.0)
    assert not hook.update(12.0)
    assert not hook.update(11.0)  # 1 bad
    assert not hook.update(13.0)  # improvement resets the count
    assert not hook.update(float("nan"))  # NaN never improves: 1 bad
    assert hook.update(13.0)  # equal is not better: 2 bad -> stop
    state = hook.state_dict()
    assert state == {"best": 13.0, "bad_evals": 2} and type(state["best"]) is float
    lower = EarlyStopping(10, "validation_loss", "min", patience=1)
    assert not lower.update(2.0) and not lower.update(1.0) and lower.update(1.5)
    with pytest.raises(ValueError):
        EarlyStopping(10, "x", "up", 1)


@pytest.mark.parametrize("setting, expected", [(0, 7), (3, 3), (-1, 0)])
def test_val_loss_period_follows_eval_period_by_default(setting, expected) -> None:
    cfg = setup_cfg(None, ["TEST.EVAL_PERIOD", "7", "SPERM.VAL_LOSS_PERIOD", str(setting)])
    assert val_loss_period(cfg) == expected
