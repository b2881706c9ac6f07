"""benchmarks/bench_bf16_parity.py's pure parts: its argument checks and the parity table (the
differences in points, the tolerance, the training CPU-time ratio)."""

import importlib.util

import pytest

from sperm_d2.benchmark.runner import REPO

SCRIPT = REPO / "benchmarks" / "bench_bf16_parity.py"


@pytest.fixture(scope="module")
def parity():
    spec = importlib.util.spec_from_file_location("bench_bf16_parity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metrics(ap: float, accuracy: float) -> dict:
    return {
        "segm/AP": ap,
        "segm/AP50": ap + 20,
        "pixellib/mAP50": 0.8,
        "accuracy": accuracy,
        "balanced_accuracy": accuracy,
    }


def test_table_marks_differences_beyond_the_tolerance(parity):
    rows = {
        "fp32": _metrics(50.0, 0.900),
        "bf16 inference": _metrics(50.4, 0.905),  # +0.4 AP, +0.5 accuracy points: ok
        "bf16 training": _metrics(48.5, 0.900),  # -1.5 AP points: not ok
        "bf16": _metrics(50.0, 0.880),  # -2 accuracy points: not ok
    }
    trainings = {"fp32": {"cpu_s": 900.0}, "bf16": {"cpu_s": 600.0}}
    lines = parity.table(rows, parity.ROWS, trainings, tolerance=1.0).splitlines()
    body = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert "| ok |" in body["fp32"] and "| ok |" in body["bf16 inference"]
    assert "| NO |" in body["bf16 training"] and "| NO |" in body["bf16"]
    assert "48.5 (-1.5)" in body["bf16 training"] and "88.0 (-2.0)" in body["bf16"]
    assert "600 (1.50x)" in body["bf16"] and "900 (1.00x)" in body["fp32"]
    # a run trained before (--fp32-run) has no CPU time measured here
    trainings["fp32"]["cpu_s"] = 0.0
    lines = parity.table(rows, parity.ROWS, trainings, tolerance=1.0).splitlines()
    assert "not timed here" in lines[2] and lines[5].endswith("| 600 |")


def test_a_missing_data_root_is_refused_in_one_line(parity, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parity.parse_args(["--data-root", str(tmp_path), "--output", str(tmp_path / "o")])
    assert "no annotations/test.json" in capsys.readouterr().err


def test_grader_seed_table_gives_means_differences_and_spread(parity):
    """--grader-seeds: per seed, mean ± std per precision, the bf16 mean minus the fp32 mean,
    the fp32 seeds' spread, and the CPU-time ratio ("n/a" when a training was reused)."""

    def run(test: float, cpu: float) -> dict:
        keys = parity.GRADER_METRICS
        return {**dict(zip(keys, (test, test, 0.9))), "cpu_s": cpu}

    results = {
        ("fp32", 0): run(0.80, 100.0),
        ("fp32", 1): run(0.90, 100.0),
        ("bf16", 0): run(0.84, 50.0),
        ("bf16", 1): run(0.84, 50.0),
    }
    body = {
        line.split(" | ")[0].strip("| "): line
        for line in parity.grader_table(results, [0, 1]).splitlines()[2:]
    }
    assert body["fp32 mean ± std"].startswith("| fp32 mean ± std | **85.0** ± 7.1 |")
    assert body["bf16 mean ± std"].startswith("| bf16 mean ± std | **84.0** ± 0.0 |")
    assert (
        body["bf16 mean - fp32 mean"]
        == "| bf16 mean - fp32 mean | -1.0 | -1.0 | +0.0 | 2.00x less |"
    )
    assert body["fp32 seeds' spread (max - min)"].startswith(
        "| fp32 seeds' spread (max - min) | 10.0 |"
    )
    results["bf16", 1]["cpu_s"] = 0.0  # reused: not timed
    text = parity.grader_table(results, [0, 1])
    assert "| bf16 seed 1 | 84.0 | 84.0 | 90.0 | reused |" in text and "| n/a |" in text
