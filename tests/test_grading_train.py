"""The head grader through the engine on tiny data: train (train_net.py), best checkpoint,
crop cache, load, grade heads; infer.py with and without a grader."""

import csv
import dataclasses
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from sperm_d2.inference.types import ImagePrediction

from .conftest import REPO, split_opts

GRADER_INSTANT = REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml"
DETECTOR_INSTANT = REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml"


def _tool(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "tools" / name), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def grader_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("grader_run")
    proc = _tool(
        "train_net.py",
        "--config-file",
        str(GRADER_INSTANT),
        *split_opts(tiny_dataset.root, "tinygrader"),
        "OUTPUT_DIR",
        str(out),
        "SEED",
        "1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_grader_trains_through_the_engine(grader_run) -> None:
    for name in ("config.yaml", "model_final.pth", "model_best.pth", "results.csv"):
        assert (grader_run / name).is_file(), name
    best = json.loads((grader_run / "best_model.json").read_text())
    assert best["metric"] == "grader/balanced_accuracy"
    assert 0.0 <= best["metrics"]["grader/accuracy"] <= 1.0
    assert np.isfinite(best["metrics"]["grader/loss"])
    with open(grader_run / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["2", "6"]  # detectron2 stores the last at MAX_ITER
    assert {"grader/accuracy", "grader/balanced_accuracy", "grader/loss"} <= set(rows[0])
    # crops cut once, cached per split
    assert (grader_run / "grader_crops" / "tinygrader_train.npz").is_file()
    assert (grader_run / "grader_crops" / "tinygrader_val.npz").is_file()


@pytest.mark.slow
def test_grader_loads_and_grades_one_head_each(grader_run, tiny_dataset) -> None:
    from sperm_d2.inference.grader import HeadGrader

    grader = HeadGrader.from_run(grader_run)
    mask = np.zeros((1, 64, 64), bool)
    mask[0, 20:30, 15:40] = True
    other = np.zeros((1, 64, 64), bool)
    other[0, 45:55, 45:60] = True
    # the same head twice (a "good" and a "bad" detection), and a second head
    pred = ImagePrediction(
        source="x.png",
        image_size=(64, 64),
        boxes=np.array([[15, 20, 40, 30], [15, 20, 40, 30], [45, 45, 60, 55]], np.float32),
        masks=np.concatenate([mask, mask, other]),
        scores=np.array([0.9, 0.8, 0.7], np.float32),
        classes=np.array([1, 0, 0], np.int64),
        class_names=("good", "bad"),
    )
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    graded = grader.grade(image, pred)
    assert len(graded) == 2  # the duplicate detection of the first head is gone
    assert graded.p_bad.shape == (2,) and ((graded.p_bad >= 0) & (graded.p_bad <= 1)).all()
    assert graded.detector_classes.tolist() == [1, 0]
    assert graded.classes.tolist() == (graded.p_bad >= 0.5).astype(int).tolist()
    # the grader's probabilities are a softmax: a batch of heads gives the same as one at a time
    both = grader.probabilities(image, graded.masks)
    one = grader.probabilities(image, graded.masks[:1])
    assert np.allclose(both[:1], one, atol=1e-5) and np.allclose(both.sum(1), 1, atol=1e-5)

    # a detector batch is graded in one call: as image by image, an image without heads too
    def part(p: ImagePrediction, s: slice) -> ImagePrediction:
        arrays = {k: getattr(p, k)[s] for k in ("boxes", "masks", "scores", "classes")}
        return dataclasses.replace(p, **arrays)

    flipped = np.ascontiguousarray(image[::-1])
    items = [(image, pred), (flipped, part(pred, slice(0))), (image, part(pred, slice(2, 3)))]
    batch = grader.grade_batch([i for i, _ in items], [p for _, p in items])
    singles = [grader.grade(i, p) for i, p in items]
    assert [len(g) for g in batch] == [2, 0, 1]
    for b, s in zip(batch, singles):
        assert np.allclose(b.p_bad, s.p_bad, atol=1e-5) and (b.classes == s.classes).all()
        assert (b.detector_classes == s.detector_classes).all() and (b.masks == s.masks).all()
    assert grader.grade_batch([], []) == []


@pytest.mark.slow
def test_grader_refuses_a_detector_run(tmp_path) -> None:
    from sperm_d2.config import setup_cfg
    from sperm_d2.inference.grader import HeadGrader

    with pytest.raises(ValueError, match="not a head grader"):
        HeadGrader(setup_cfg(str(DETECTOR_INSTANT)), tmp_path / "none.pth", source="det_run")


@pytest.mark.slow
def test_infer_with_and_without_grader(grader_run, tiny_dataset, tmp_path) -> None:
    records = json.loads(tiny_dataset.jsons["val"].read_text())["images"][:2]
    images = [tiny_dataset.root / r["file_name"] for r in records]
    common = ["--config-file", str(DETECTOR_INSTANT), "--input", *map(str, images)]
    common += ["--confidence-threshold", "0", "--no-overlays"]
    opts = ["--opts", "TEST.DETECTIONS_PER_IMAGE", "4"]
    plain = _tool("infer.py", *common, "--output", str(tmp_path / "plain"), *opts)
    graded = _tool(
        "infer.py",
        *common,
        "--output",
        str(tmp_path / "graded"),
        "--grader",
        str(grader_run),
        *opts,
    )
    for proc in (plain, graded):
        assert proc.returncode == 0, proc.stderr[-3000:]

    def rows(name):
        with open(tmp_path / name / "instances.csv", newline="") as f:
            return list(csv.DictReader(f))

    plain_rows, graded_rows = rows("plain"), rows("graded")
    assert plain_rows and all(r["p_bad"] == "" and r["detector_class"] == "" for r in plain_rows)
    assert graded_rows and len(graded_rows) <= len(plain_rows)
    for r in graded_rows:
        p = float(r["p_bad"])
        assert 0 <= p <= 1 and r["class"] == ("bad" if p >= 0.5 else "good")
        assert r["detector_class"] in ("good", "bad")
    summary = json.loads((tmp_path / "graded" / "summary.json").read_text())
    assert summary["grader"] == str(grader_run)
    record = json.loads((tmp_path / "graded" / "images.jsonl").read_text().splitlines()[0])
    assert all(0 <= h["p_bad"] <= 1 for h in record["instances"])


def test_balanced_sampler_and_loss_weights(tiny_dataset) -> None:
    from sperm_d2.grading.loader import GraderTrainLoader, class_weights
    from sperm_d2.grading.samples import HeadSamples

    assert class_weights(np.array([10, 30])).tolist() == pytest.approx([1.5, 0.5])
    assert class_weights(np.array([0, 5])).tolist() == [0.0, 1.0]
    from sperm_d2.config import setup_cfg

    labels = np.array([0] * 10 + [1] * 90)
    samples = HeadSamples(
        images=np.zeros((100, 16, 16, 4), np.uint8), labels=labels, sources=np.array(["a"] * 100)
    )
    cfg = setup_cfg(str(GRADER_INSTANT), ["SOLVER.IMS_PER_BATCH", "400"])
    np.random.seed(0)
    batch = next(iter(GraderTrainLoader(cfg, samples)))
    assert batch["images"].shape == (400, 4, 16, 16)
    assert 0.4 < batch["labels"].float().mean().item() < 0.6  # classes drawn equally
    cfg = setup_cfg(str(GRADER_INSTANT), ["SPERM.GRADER.BALANCE", "loss"])
    batch = next(iter(GraderTrainLoader(cfg, samples)))
    assert batch["class_weights"].tolist() == pytest.approx([1.8, 0.2])


def test_colour_augmentation_leaves_the_mask_channel_alone() -> None:
    from sperm_d2.config import setup_cfg
    from sperm_d2.grading.augment import augment_batch, rotate_hue

    cfg = setup_cfg(str(GRADER_INSTANT), ["SPERM.GRADER.AUG.FLIP", "False"])
    cfg.defrost()
    cfg.SPERM.GRADER.AUG.ROTATE_DEGREES = 0.0
    cfg.SPERM.GRADER.AUG.SCALE = [1.0, 1.0]
    cfg.SPERM.GRADER.AUG.SHIFT = 0.0
    x = torch.rand(5, 4, 8, 8) * 255
    y = augment_batch(x.clone(), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, 3], x[:, 3]) and not torch.equal(y[:, :3], x[:, :3])
    assert y.min() >= 0 and y.max() <= 255
    grey = torch.full((1, 3, 2, 2), 100.0)
    assert torch.allclose(rotate_hue(grey, torch.tensor([40.0])), grey, atol=1e-4)


def test_grading_metrics() -> None:
    from sperm_d2.grading.evaluator import grading_metrics

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    m = grading_metrics(probs, labels, ["good", "bad"])
    assert m["accuracy"] == 0.75
    assert m["recall_good"] == 1.0 and m["recall_bad"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])))


@pytest.mark.slow
def test_grader_ensemble_averages_its_members(grader_run) -> None:
    from sperm_d2.config import setup_cfg
    from sperm_d2.inference.grader import HeadGrader

    single = HeadGrader.from_run(grader_run)
    twice = HeadGrader.from_run([grader_run, grader_run])
    assert len(twice.models) == 2 and twice.source == f"{grader_run}, {grader_run}"
    image = np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    masks = np.zeros((2, 48, 48), bool)
    masks[0, 10:20, 5:30], masks[1, 30:40, 20:44] = True, True
    assert np.allclose(single.probabilities(image, masks), twice.probabilities(image, masks))
    # a member of another view sees its own crops: the ensemble is the mean of the two graders
    # (heads at a slant, so that the aligned view turns them and the unaligned one does not)
    masks = np.stack(
        [
            cv2.ellipse(np.zeros((48, 48), np.uint8), c, (10, 5), 35, 0, 360, 1, -1)
            for c in ((16, 14), (32, 34))
        ]
    ).astype(bool)
    other = setup_cfg(str(grader_run / "config.yaml"), ["SPERM.GRADER.VIEW", "unaligned"])
    unaligned = HeadGrader(other, single.weights)
    mixed = HeadGrader(single.cfg, single.weights, members=[(other, single.weights)])
    assert len(mixed.views) == 2
    expected = (single.probabilities(image, masks) + unaligned.probabilities(image, masks)) / 2
    assert np.allclose(mixed.probabilities(image, masks), expected, atol=1e-6)
    assert not np.allclose(unaligned.crops(image, masks), single.crops(image, masks))
    renamed = setup_cfg(str(grader_run / "config.yaml"), ["SPERM.CLASSES", "['normal', 'bad']"])
    with pytest.raises(ValueError, match="classes differ"):
        HeadGrader(single.cfg, single.weights, members=[(renamed, single.weights)])


@pytest.mark.slow
def test_bench_grader_times_runs_and_averaged_runs(grader_run) -> None:
    entries = [str(grader_run), f"{grader_run}+{grader_run}"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/bench_grader.py"), "--graders", *entries]
        + ["--heads", "4", "--size", "128", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if "ms/head" in line]
    assert [r[-1] for r in rows] == entries
    assert rows[0][2] == "1.00x" and float(rows[1][0]) > 0


@pytest.mark.slow
def test_score_graders_scores_runs_alone_and_averaged(grader_run, tiny_dataset) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/score_graders.py"),
            "--data",
            str(tiny_dataset.root),
        ]
        + ["--runs", str(grader_run), str(grader_run), "--split", "tinygrader_val"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("balanced")]
    assert len(rows) == 3  # each run, then the pair
    assert rows[0][:6] == rows[1][:6] == rows[2][:6]  # a run averaged with itself is itself
    # the training's own evaluation of the same checkpoint gives the same balanced accuracy
    best = json.loads((grader_run / "best_model.json").read_text())["metrics"]
    assert float(rows[0][1]) == pytest.approx(best["grader/balanced_accuracy"], abs=1e-4)
