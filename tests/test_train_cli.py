"""tools/train_net.py end to end on tiny data: run folder, --eval-only, SIGKILL + --resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from .conftest import REPO, split_opts

INSTANT = REPO / "configs" / "quick_schedules" / "sperm_mask_rcnn_R_50_FPN_instant_test.yaml"
TRAIN_NET = REPO / "tools" / "train_net.py"


def _cmd(*args: str) -> list[str]:
    return [sys.executable, str(TRAIN_NET), *args]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="2")


def _try(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    """train_net.py with ``args``, its output captured, whatever its exit status."""
    return subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=timeout, env=_env())


def _run(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    proc = _try(args, timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_run")
    _run(
        ["--config-file", str(INSTANT)]
        + split_opts(tiny_dataset.root, "tinycli")
        + ["OUTPUT_DIR", str(out), "SPERM.BEST_BY_VAL_LOSS", "True", "SEED", "3"]
    )
    return out


@pytest.mark.slow
def test_training_writes_the_run_folder(trained_run) -> None:
    out = trained_run
    for name in (
        "model_final.pth",
        "model_best.pth",
        "model_best_val_loss.pth",
        "best_model.json",
        "best_val_loss.json",
        "metrics.json",
        "results.csv",
        "plot_loss.png",
        "plot_validation_loss.png",
        "plot_ap.png",
        "config.yaml",
        "run_info.json",
    ):
        assert (
            out / name
        ).is_file(), f"{name} missing from {sorted(p.name for p in out.iterdir())}"
    lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    keys = {k for line in lines for k in line}
    assert {
        "validation_loss",
        "val_loss_mask",
        "pixellib/mAP50",
        "segm/AP50",
        "segm/AP-bad",
    } <= keys
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # EVAL_PERIOD 2 over MAX_ITER 4: after iteration 2 (stored at iter 1) and after training (4).
    assert [r["iteration"] for r in rows] == ["1", "4"]
    best = json.loads((out / "best_model.json").read_text())
    assert best["metric"] == "segm/AP50" and best["iteration"] in (1, 4)
    assert best["checkpoint"] == "model_best.pth" and "pixellib/mAP50" in best["metrics"]
    info = json.loads((out / "run_info.json").read_text())
    assert info["seed"] == 3 and info["git_commit"] and info["sperm_d2_version"]
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["iteration"] == 3
    torch.load(out / "model_best.pth", weights_only=True)
    assert (out / "last_checkpoint").read_text() == "model_final.pth"


@pytest.mark.slow
def test_eval_only_on_the_trained_model(trained_run, tmp_path) -> None:
    _run(
        [
            "--config-file",
            str(trained_run / "config.yaml"),
            "--eval-only",
            "MODEL.WEIGHTS",
            str(trained_run / "model_best.pth"),
            "OUTPUT_DIR",
            str(tmp_path),
        ]
    )
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert set(results) == {"bbox", "segm", "pixellib", "heads"}
    assert 0.0 <= results["pixellib"]["mAP50"] <= 1.0 and results["pixellib"]["images"] == 4
    assert 0.0 <= results["heads"]["recall50"] <= 1.0


def test_eval_only_in_the_training_folder_keeps_its_record(trained_run) -> None:
    """train_net.py's usage evaluates a checkpoint in its own run folder (OUTPUT_DIR from the
    run's config.yaml): the training's config.yaml, run_info.json and last round's COCO
    predictions stay as they were."""
    predictions = "inference/tinycli_val/coco_instances_results.json"
    kept = {
        n: (trained_run / n).read_bytes() for n in ("config.yaml", "run_info.json", predictions)
    }
    config = str(trained_run / "config.yaml")
    _run(
        [
            "--config-file",
            config,
            "--eval-only",
            "MODEL.WEIGHTS",
            str(trained_run / "model_best.pth"),
        ]
    )
    assert {n: (trained_run / n).read_bytes() for n in kept} == kept
    assert json.loads((trained_run / "eval_info.json").read_text())["eval_only"] is True
    assert (trained_run / "eval_config.yaml").is_file()
    assert (trained_run / "eval_results.json").is_file()
    assert (trained_run / "eval_inference/tinycli_val/coco_instances_results.json").is_file()


def test_training_into_a_run_folder_needs_resume(trained_run, tiny_dataset) -> None:
    """A second training into a finished run's folder would overwrite its checkpoints: refused in
    one line before anything is written, unless --resume says to continue it."""
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()}
    opts = split_opts(tiny_dataset.root, "tinycli") + ["OUTPUT_DIR", str(trained_run)]
    proc = _try(["--config-file", str(INSTANT), *opts], timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if "OUTPUT_DIR" in line]
    assert len(error) == 1 and str(trained_run) in error[0] and "--resume" in error[0]
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()} == before


@pytest.mark.slow
def test_sigkill_then_resume_finishes_at_max_iter(tiny_dataset, tmp_path) -> None:
    opts = split_opts(tiny_dataset.root, "tinykill") + [
        "OUTPUT_DIR",
        str(tmp_path),
        "SOLVER.MAX_ITER",
        "6",
        "TEST.EVAL_PERIOD",
        "0",
        "SPERM.VAL_LOSS_PERIOD",
        "-1",
    ]
    proc = subprocess.Popen(
        _cmd("--config-file", str(INSTANT), *opts),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    last = tmp_path / "last_checkpoint"
    deadline = time.time() + 180
    try:
        while not (last.is_file() and last.read_text() == "model_0000003.pth"):
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no checkpoint appeared in time"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "model_final.pth").exists()

    resumed = _run(["--config-file", str(INSTANT), "--resume", *opts])
    assert "Starting training from iteration 4" in resumed.stderr + resumed.stdout
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert final["iteration"] == 5


@pytest.mark.slow
def test_unknown_dataset_is_reported_in_one_line(tmp_path) -> None:
    opts = ["SPERM.DATA_ROOT", str(tmp_path), "OUTPUT_DIR", str(tmp_path)]
    proc = _try(["--config-file", str(INSTANT), *opts], timeout=120)
    assert proc.returncode == 2
    assert "not registered" in proc.stderr and "sperm_train" in proc.stderr


@pytest.mark.slow
def test_diverging_loss_names_the_iteration_and_what_to_try(tiny_dataset, tmp_path) -> None:
    opts = split_opts(tiny_dataset.root, "tinynan") + ["OUTPUT_DIR", str(tmp_path)]
    opts += ["SOLVER.BASE_LR", "1e12", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()"]
    proc = _try(["--config-file", str(INSTANT), *opts], timeout=180)
    assert proc.returncode == 1, proc.stderr[-2000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("train_net.py: ") and "diverged at iteration " in message
    assert "SOLVER.BASE_LR (now 1000000000000.0)" in message and "WARMUP_ITERS" in message


@pytest.mark.slow
def test_early_stopping_ends_training_with_a_final_checkpoint(tiny_dataset, tmp_path) -> None:
    opts = split_opts(tiny_dataset.root, "tinystop") + ["OUTPUT_DIR", str(tmp_path)]
    opts += ["SOLVER.MAX_ITER", "20", "TEST.EVAL_PERIOD", "1", "SPERM.VAL_LOSS_PERIOD", "-1"]
    opts += ["SPERM.EARLY_STOP_PATIENCE", "1", "SPERM.BEST_METRIC", "segm/AP50"]
    proc = _run(["--config-file", str(INSTANT), *opts])
    assert "stopped early after iteration" in proc.stdout + proc.stderr
    assert "Exception during training" not in proc.stdout + proc.stderr
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    # Patience 1 with an evaluation after every iteration: the first evaluation that does not
    # improve (a near-random model mostly scores 0 or NaN) ends training long before MAX_ITER.
    assert final["iteration"] < 19
    assert (tmp_path / "results.csv").is_file() and (tmp_path / "plot_loss.png").is_file()
