"""The real-data benchmark (benchmarks/real_data.py, sperm_d2.benchmark): its pure parts
(argument checks, skip reasons, mean ± std, the table, the class-folder trees, the training
stamp), the script's parser, and one slow end-to-end --smoke run of the script on generated
class-folder crops."""

import argparse
import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from sperm_d2.benchmark.crops import smoke_subset, split_images
from sperm_d2.benchmark.fields import collect_field_metrics, smoke_fields
from sperm_d2.benchmark.options import (
    DEFAULT_CONFIG,
    DEFAULT_GRADER_CONFIG,
    ENV_REAL_DATA,
    check_args,
    resolve_data_root,
    skip_reason,
)
from sperm_d2.benchmark.protocol import (
    grader_suffix,
    results_stem,
    run_benchmark,
    weights_relative,
)
from sperm_d2.benchmark.results import aggregate_folds, collect_metrics, mean_std
from sperm_d2.benchmark.results_table import fmt_mean_std, fmt_value, format_table
from sperm_d2.benchmark.runner import REPO, Runner, StepError
from sperm_d2.benchmark.training import STAMP, reuse_or_resume, schedule_opts, train_stamp
from sperm_d2.data.labelme_io import write_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.synthetic import draw_scene, render_scene_detailed, sample_scene
from sperm_d2.evaluation.folders import list_class_folders

SCRIPT = REPO / "benchmarks" / "real_data.py"


def _args(**kw) -> argparse.Namespace:
    """The options :func:`check_args` reads, at the script's defaults, overridden by ``kw``."""
    defaults = dict(
        datasets="hushem,smids",
        kfold=5,
        folds=None,
        max_iter=None,
        smoke=False,
        smoke_images=8,
        opts=[],
        config=DEFAULT_CONFIG,
        grader_config=DEFAULT_GRADER_CONFIG,
        grader_epochs=None,
        grader_opts=[],
        grader_name=None,
        protocols="split,kfold",
    )
    return argparse.Namespace(**{**defaults, **kw})


# ---------------------------------------------------------------- arguments, data location


def test_script_parses_checks_and_documents_its_arguments(capsys) -> None:
    spec = importlib.util.spec_from_file_location("real_data", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.parse_args([])
    assert args.dataset_list == ["hushem", "smids"]
    assert args.kfold == 5 and args.fold_list == [0, 1, 2, 3, 4]
    assert args.max_iter is None and args.config == DEFAULT_CONFIG and args.opts == []
    assert vars(_args()).items() <= vars(args).items()  # the unit tests' defaults are the script's
    assert script.parse_args(["--smoke"]).max_iter == 4
    with pytest.raises(SystemExit) as e:  # a bad value: status 2 and a one-line message
        script.parse_args(["--folds", "5"])
    assert e.value.code == 2
    assert "error: --folds '5': folds [5] are outside 0..4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        script.parse_args(["--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    assert "usage:" in help_text and "python benchmarks/real_data.py --data" in help_text


def test_check_args_completes_the_lists() -> None:
    args = check_args(_args())
    assert args.dataset_list == ["hushem", "smids"] and args.fold_list == [0, 1, 2, 3, 4]
    args = check_args(_args(datasets="smids, hushem,smids", folds="3,1", max_iter=9))
    assert args.dataset_list == ["smids", "hushem"] and args.fold_list == [1, 3]
    assert args.max_iter == 9
    assert check_args(_args(smoke=True)).max_iter == 4  # smoke: a handful of iterations
    assert check_args(_args(smoke=True, max_iter=2)).max_iter == 2
    assert check_args(_args(kfold=0, folds="7")).fold_list == []
    assert check_args(_args()).protocol_list == ["split", "kfold"]
    assert check_args(_args(protocols="kfold", datasets="hushem")).protocol_list == ["kfold"]


def test_each_grader_config_gets_its_own_folders(tmp_path) -> None:
    """Graders compared on the same detectors never share a run folder or results file."""
    part = "configs/sperm_grader_part_unet_cpu.yaml"
    assert grader_suffix(_args()) == "" and results_stem(_args()) == "results"
    assert grader_suffix(_args(grader_config=str(REPO / DEFAULT_GRADER_CONFIG))) == ""
    assert grader_suffix(_args(grader_config=part)) == "_sperm_grader_part_unet_cpu"
    assert results_stem(_args(grader_config=part)) == "results_sperm_grader_part_unet_cpu"
    assert grader_suffix(_args(grader_config=part, grader_name="scratch")) == "_scratch"
    copy = tmp_path / Path(DEFAULT_GRADER_CONFIG).name  # another file of the default's name
    copy.write_text((REPO / DEFAULT_GRADER_CONFIG).read_text())
    assert grader_suffix(_args(grader_config=str(copy))) == "_sperm_grader_cpu"
    # weights named relative to the folder the benchmark starts in, as the tools see them
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    opts = ["SOLVER.BASE_LR", "0.1", "MODEL.WEIGHTS", os.path.relpath(weights)]
    assert weights_relative(opts) == ["SOLVER.BASE_LR", "0.1", "MODEL.WEIGHTS", str(weights)]
    inside = ["MODEL.WEIGHTS", str(REPO / "configs" / "labels" / "default.yaml")]
    assert weights_relative(inside) == ["MODEL.WEIGHTS", "configs/labels/default.yaml"]
    assert weights_relative(["MODEL.WEIGHTS", "https://x/w.pth"]) == [
        "MODEL.WEIGHTS",
        "https://x/w.pth",
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"datasets": "hushem,mnist"}, "unknown dataset ['mnist']"),
        ({"datasets": ","}, "empty dataset list"),
        ({"folds": "5"}, "outside 0..4"),
        ({"folds": "a"}, "expected comma-separated fold numbers"),
        ({"kfold": 1}, "--kfold 1"),
        ({"max_iter": 0}, "--max-iter 0"),
        ({"smoke_images": 1}, "--smoke-images 1"),
        ({"opts": ["SOLVER.MAX_ITER"]}, "KEY VALUE pairs"),
        ({"grader_opts": ["MODEL.WEIGHTS"]}, "--grader-opts ['MODEL.WEIGHTS']: expected KEY"),
        ({"grader_opts": ["A", "1"], "grader_config": "none"}, "no grader"),
        ({"grader_name": "a/b"}, "--grader-name 'a/b': use letters"),
        ({"grader_opts": ["MODEL.WEIGHTS", "nope.pth"]}, "MODEL.WEIGHTS nope.pth: not a file"),
        ({"opts": ["MODEL.WEIGHTS", "nope.pth"]}, "--opts MODEL.WEIGHTS nope.pth: not a file"),
        ({"protocols": "split,cv"}, "unknown protocol ['cv']"),
        ({"protocols": "kfold"}, "only hushem has a K-fold protocol, not smids"),
        ({"protocols": "kfold", "datasets": "hushem", "kfold": 0}, "nothing to run"),
    ],
)
def test_check_args_errors_name_the_problem(options, message) -> None:
    with pytest.raises(ValueError) as e:
        check_args(_args(**options))
    assert message in str(e.value)


def test_data_root_from_argument_then_environment(tmp_path) -> None:
    env = {ENV_REAL_DATA: str(tmp_path)}
    assert resolve_data_root("/x", env) == Path("/x")
    assert resolve_data_root(None, env) == tmp_path
    assert resolve_data_root(None, {}) is None


def test_skip_reasons(tmp_path) -> None:
    assert "pass --data DIR or set SPERM_D2_REAL_DATA" in skip_reason(None, "hushem")
    assert skip_reason(tmp_path, "smids").endswith("smids_train: folder not found")
    (tmp_path / "hushem").mkdir()
    assert "no class folders" in skip_reason(tmp_path, "hushem")
    (tmp_path / "hushem" / "01_Normal").mkdir()
    assert skip_reason(tmp_path, "hushem") is None
    (tmp_path / "sperm_parsing" / "sub").mkdir(parents=True)
    assert "no labelme .json files" in skip_reason(tmp_path, "sperm_parsing")
    (tmp_path / "sperm_parsing" / "a.json").write_text("{}")
    assert skip_reason(tmp_path, "sperm_parsing") is None


def test_without_data_every_dataset_is_skipped_with_a_reason(tmp_path, caplog) -> None:
    args = check_args(_args())
    assert run_benchmark(args, None, tmp_path / "out", "python x.py") is None
    assert "skipping hushem: no real data" in caplog.text
    assert "skipping smids: no real data" in caplog.text
    assert not (tmp_path / "out").exists()  # nothing written when nothing ran


# ---------------------------------------------------------------- aggregation and table


def test_mean_std_over_folds_leaves_out_undefined_values() -> None:
    agg = mean_std([0.8, 0.9, None, float("nan"), 1.0])
    assert agg["n"] == 3 and agg["mean"] == pytest.approx(0.9)
    assert agg["std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1, "values": [0.5]}
    assert mean_std([None])["mean"] is None
    folds = [{"accuracy": 0.5, "no_head": 1}, {"accuracy": 1.0, "no_head": 3, "extra": 2.0}]
    agg = aggregate_folds(folds)
    assert list(agg) == ["accuracy", "no_head", "extra"]
    assert agg["no_head"]["mean"] == 2 and agg["extra"]["n"] == 1
    assert agg["accuracy"]["std"] == pytest.approx(math.sqrt(0.125))


def test_value_formatting() -> None:
    assert fmt_value(57.123, "ap") == "57.1"
    assert fmt_value(0.98765, "frac") == "0.988"
    assert fmt_value(2.0, "count") == "2"
    assert fmt_value(float("nan"), "frac") == "n/a" and fmt_value(None, "ap") == "n/a"
    agg = mean_std([0.9, 0.8, None])
    assert fmt_mean_std(agg, "frac") == "0.850 ± 0.071 (n=2)"
    assert fmt_mean_std(None, "frac") == "n/a"


def _results(smoke: bool = False) -> dict:
    test = {
        "segm/AP": 61.25,
        "segm/AP50": 95.0,
        "bbox/AP": 60.0,
        "pixellib/mAP50": 0.9123,
        "accuracy": 0.875,
        "sensitivity_bad": 0.9,
        "specificity_bad": 0.8,
        "f1_bad": 0.85,
        "no_head": 1,
    }
    folds = [dict(test, accuracy=a) for a in (0.8, 0.9)]
    return {
        "meta": {
            "date": "2026-11-27 04:00 UTC",
            "machine": "AMD EPYC, 2 CPU cores",
            "config": DEFAULT_CONFIG,
            "iterations": "1500 iterations",
            "seed": 0,
            "split": "0.7,0.15,0.15",
            "smoke": smoke,
            "command": "python x.py",
            "commands": ["python tools/train_net.py --config-file c.yaml"],
        },
        "datasets": {
            "hushem": {
                "split": {"test": test, "test_images": 33},
                "kfold": {"k": 5, "folds_run": "0,1", "aggregate": aggregate_folds(folds)},
            },
            "smids": {"skipped": "/data/smids_train: folder not found"},
        },
    }


def test_table_says_which_split_each_number_is_on() -> None:
    md = format_table(_results())
    lines = md.splitlines()
    assert lines[0] == "Real-data benchmark, 2026-11-27 04:00 UTC on AMD EPYC, 2 CPU cores"
    assert f"config `{DEFAULT_CONFIG}`" in lines[1] and "SMOKE" not in md
    header = next(ln for ln in lines if ln.startswith("| metric"))
    assert "hushem test split (33 images)" in header
    assert "hushem 5-fold CV, held-out folds 0,1 (mean ± std)" in header
    assert "study (PixelLib R-101)" in header
    row = {ln.split(" | ")[0]: ln for ln in lines if ln.startswith("| ")}
    assert row["| COCO segm AP (x100)"] == "| COCO segm AP (x100) | 61.2 | 61.2 ± 0.0 |  |"
    assert "| 0.912 | 0.912 ± 0.000 | 0.891" in row["| pixellib/mAP50 (0-1)"]
    assert "| 0.875 | 0.850 ± 0.071 | 98 %" in row["| image-level accuracy good/bad"]
    assert "bias on the bad score (chosen on val)" in md
    assert "- smids: skipped (/data/smids_train: folder not found)" in lines
    assert "python tools/train_net.py --config-file c.yaml" in lines
    assert all(ln.count("|") == header.count("|") for ln in lines if ln.startswith("|"))


def test_fields_get_their_own_table_with_the_targets() -> None:
    res = _results()
    test = {
        "segm/AP": 80.04,
        "segm/AP75": 95.0,
        "heads/recall50": 0.99,
        "heads/median_iou": 0.9123,
        "heads/gt_heads": 267.0,
        "heads/gt_at_border": 8.0,
        "infer/s_per_field": 1.234,
    }
    res["datasets"]["sperm_parsing"] = {
        "split": {"kind": "fields", "test": test, "test_images": 38, "data_root": "d"}
    }
    res["meta"]["fields_config"] = "configs/fields.yaml"
    md = format_table(res)
    lines = md.splitlines()
    assert f"config `{DEFAULT_CONFIG}` and `configs/fields.yaml`" in lines[1]
    header = [ln for ln in lines if ln.startswith("| metric")]
    assert len(header) == 2 and "sperm_parsing" not in header[0]  # not among the crops
    only_fields = {**res, "datasets": {"sperm_parsing": res["datasets"]["sperm_parsing"]}}
    assert "(config `configs/fields.yaml`," in format_table(only_fields).splitlines()[1]
    assert "sperm_parsing test split (38 fields)" in header[1] and "target" in header[1]
    row = {ln.split(" | ")[0]: ln for ln in lines if ln.startswith("| ")}
    assert row["| COCO segm AP (x100)"].endswith("| 80.0 | >= 85 |")
    assert row["| head recall at mask IoU 0.5"].endswith("| 0.990 | >= 0.98 |")
    assert "| 267 (8) |" in row["| annotated heads (of them cut by the border)"]
    assert "| 1.23 |" in row["| infer.py seconds per field (overlays, CSV, report)"]


def test_smoke_table_is_marked_and_failures_listed() -> None:
    res = _results(smoke=True)
    res["datasets"]["smids"] = {"error": "train_net.py exited 1"}
    md = format_table(res)
    assert "SMOKE RUN" in md and "not a result" in md
    assert "- smids: FAILED (train_net.py exited 1)" in md


# ---------------------------------------------------------------- steps' pure helpers


def test_schedule_opts() -> None:
    assert schedule_opts(None) == []
    opts = dict(zip(*[iter(schedule_opts(1000))] * 2))
    assert opts == {
        "SOLVER.MAX_ITER": "1000",
        "SOLVER.STEPS": "(730, 900)",
        "SOLVER.WARMUP_ITERS": "100",
        "SOLVER.CHECKPOINT_PERIOD": "200",
        "TEST.EVAL_PERIOD": "200",
    }
    assert dict(zip(*[iter(schedule_opts(1))] * 2))["SOLVER.STEPS"] == "()"


def test_split_images_and_folders_from_the_coco_split(tmp_path) -> None:
    """``evaluate.py --folders`` takes the split's COCO file: its images, classed by folder."""
    src = tmp_path / "crops"
    for folder in ("01_Normal", "02_Tapered", "non_sperm"):
        (src / folder).mkdir(parents=True)
        (src / folder / "a.bmp").write_bytes(b"x")  # the same name in two folders (HuSHeM)
    root = tmp_path / "root"
    (root / "annotations").mkdir(parents=True)
    images = [
        {"id": i, "file_name": f"../crops/{f.name}/a.bmp"}
        for i, f in enumerate(sorted(src.iterdir()))
    ]
    (root / "annotations" / "test.json").write_text(json.dumps({"images": images}))
    paths = split_images(root, "test")
    assert sorted(p.parent.name for p in paths) == ["01_Normal", "02_Tapered", "non_sperm"]
    assert all(p.is_file() for p in paths)
    items, info = list_class_folders(
        root / "annotations" / "test.json", LabelMap.load(REPO / "configs/labels/default.yaml")
    )
    assert items == [
        (str(src / "01_Normal" / "a.bmp"), "good"),
        (str(src / "02_Tapered" / "a.bmp"), "bad"),
    ]
    assert info == {"ignored_folders": {"non_sperm": 1}}
    (root / "annotations" / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json: not a COCO split"):
        list_class_folders(
            root / "annotations" / "bad.json", LabelMap.load(REPO / "configs/labels/default.yaml")
        )


def test_runner_logs_shows_shell_safe_commands_and_names_failures(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="sperm_d2.benchmark")
    run = Runner(tmp_path / "logs")
    ok = [sys.executable, "-c", "print('hi')", "DATASETS.TEST", "()"]
    assert run(ok, "ok") == 0
    assert run.commands == ["python -c 'print('\"'\"'hi'\"'\"')' DATASETS.TEST '()'"]
    assert (tmp_path / "logs" / "ok.log").read_text().strip() == "hi"
    assert "$ python -c" in caplog.text and "ok" in run.seconds and "ok" in run.cpu_seconds
    bad = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    with pytest.raises(StepError, match=r"exited 3 \(see .*bad.log\): boom"):
        run(bad, "bad")
    assert run(bad[:2] + ["import sys; sys.exit(1)"], "skipped", ok=(0, 1)) == 1


def test_collect_metrics(tmp_path) -> None:
    coco = {
        "threshold": 0.4,
        "test": {
            "segm/AP": 50.0,
            "segm/AP50": 90.0,
            "bbox/AP": 45.0,
            "pixellib/mAP50": 0.88,
            "segm/AP75": 1.0,
        },
    }
    folders = {
        "threshold": 0.3,
        "test": {
            "accuracy": 0.9,
            "sensitivity_bad": 1.0,
            "specificity_bad": None,
            "f1_bad": 0.95,
            "no_head": 0,
            "images": 10,
        },
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    (tmp_path / "f.json").write_text(json.dumps(folders))
    m = collect_metrics(tmp_path / "c.json", tmp_path / "f.json")
    assert m["segm/AP50"] == 90.0 and "segm/AP75" not in m and m["instance_threshold"] == 0.4
    assert m["accuracy"] == 0.9 and m["specificity_bad"] is None and m["image_threshold"] == 0.3
    folders["bias_bad"] = -0.2
    folders["test_top_head"] = {"accuracy": 0.75, "balanced_accuracy": 0.5}
    folders["confusion_matrix"] = {"rows_true": ["good", "bad"], "counts": [[2, 1, 0], [0, 7, 0]]}
    (tmp_path / "f.json").write_text(json.dumps(folders))
    m = collect_metrics(tmp_path / "c.json", tmp_path / "f.json")
    assert m["bias_bad"] == -0.2 and m["top_head/accuracy"] == 0.75
    assert m["majority_accuracy"] == 0.7  # 7 of 10 crops are bad


def test_train_stamp_is_the_command_with_absolute_folders() -> None:
    cmd = [sys.executable, "tools/train_net.py", "--config-file", "c.yaml", "SPERM.DATA_ROOT"]
    cmd += ["out/data", "OUTPUT_DIR", "/abs/train", "DATASETS.TEST", "()"]
    cmd += ["MODEL.WEIGHTS", "runs/../w.pth"]
    assert train_stamp(cmd, Path("/repo")) == (
        "tools/train_net.py --config-file c.yaml SPERM.DATA_ROOT /repo/out/data "
        "OUTPUT_DIR /abs/train DATASETS.TEST '()' MODEL.WEIGHTS /repo/w.pth"
    )
    url = [*cmd[:-1], "https://example.org/w.pth"]
    assert train_stamp(url, Path("/repo")).endswith("MODEL.WEIGHTS https://example.org/w.pth")


def test_finished_training_is_reused_killed_resumed_foreign_refused(tmp_path) -> None:
    run_dir = tmp_path / "train"
    cmd = ["python", "tools/train_net.py", "--config-file", "c.yaml", "OUTPUT_DIR", str(run_dir)]
    assert reuse_or_resume(run_dir, cmd) is False  # nothing there: train
    run_dir.mkdir()
    (run_dir / "model_0000099.pth").write_bytes(b"x")
    with pytest.raises(StepError, match="unknown training"):
        reuse_or_resume(run_dir, cmd)
    stamp = {"command": train_stamp(cmd), "finished": False}
    (run_dir / STAMP).write_text(json.dumps(stamp))
    assert reuse_or_resume(run_dir, cmd) is False  # killed part-way: train with --resume
    (run_dir / STAMP).write_text(json.dumps({**stamp, "finished": True}))
    (run_dir / "model_final.pth").write_bytes(b"x")
    assert reuse_or_resume(run_dir, cmd) is True
    # the same folder spelled relative to the repo is the same training
    rel = [*cmd[:-1], os.path.relpath(run_dir, REPO)]
    assert reuse_or_resume(run_dir, rel) is True
    with pytest.raises(StepError, match="trained by another command"):
        reuse_or_resume(run_dir, [*cmd, "SOLVER.MAX_ITER", "9"])


def test_smoke_subset_copies_the_first_crops_per_class(tmp_path) -> None:
    src = tmp_path / "src"
    for folder in ("normal", "abnormal"):
        (src / folder).mkdir(parents=True)
        for i in range(5):
            (src / folder / f"{i}.png").write_bytes(b"x")
        (src / folder / "notes.txt").write_text("not an image")
    dst = smoke_subset(src, tmp_path / "dst", 2)
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()) == [
        "abnormal/0.png",
        "abnormal/1.png",
        "normal/0.png",
        "normal/1.png",
    ]


# ---------------------------------------------------------------- end to end (slow)


def _crop(seed: int, size: int = 64) -> np.ndarray:
    """A generated crop with one stained head at the centre."""
    rng = np.random.default_rng(seed)
    spec = sample_scene(rng, size, size, 1)
    spec = replace(spec, heads=(replace(spec.heads[0], cx=size / 2, cy=size / 2),))
    return draw_scene(spec, rng)


def _parts_field(folder: Path, seed: int, size: int = 96) -> int:
    """A generated field as Sperm Parsing annotates it: each head in two parts (Nucleus, and an
    Acrosome inside it) and a Tail, sharing a group_id. Returns its head count."""
    image, heads = render_scene_detailed(np.random.default_rng(seed), size, size)
    cv2.imwrite(str(folder / f"f{seed}.jpg"), image)
    shapes = []
    for gid, (_, _, poly) in enumerate(heads, 1):
        centre = poly.mean(axis=0)
        inner = centre + 0.5 * (poly - centre)
        tail = np.array([centre, centre + [1, 0], centre + [1, 20], centre + [0, 20]])
        for label, pts in (("Nucleus", poly), ("Acrosome", inner), ("Tail", tail)):
            pts = np.clip(pts, 0, size - 1)
            shapes.append(
                {
                    "label": label,
                    "points": np.round(pts, 2).tolist(),
                    "shape_type": "polygon",
                    "group_id": gid,
                }
            )
    write_labelme_json(folder / f"f{seed}.json", folder / f"f{seed}.jpg", size, size, shapes)
    return len(heads)


def test_smoke_fields_copies_labelme_files_with_their_images(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for seed in range(3):
        _parts_field(src, seed)
    dst = smoke_fields(src, tmp_path / "dst", 2)
    assert sorted(p.name for p in dst.iterdir()) == ["f0.jpg", "f0.json", "f1.jpg", "f1.json"]


def test_collect_field_metrics(tmp_path) -> None:
    coco = {"test": {"segm/AP": 81.0, "heads/recall50": 0.97}, "threshold": 0.4}
    (tmp_path / "m.json").write_text(json.dumps(coco))
    summary = {
        "seconds": 10.0,
        "images_processed": 4,
        "grader": None,
        "totals": {"total": {"heads_per_image": 6.5, "heads_at_border": 2, "pct_good": None}},
    }
    (tmp_path / "s.json").write_text(json.dumps(summary))
    out = collect_field_metrics(tmp_path / "m.json", tmp_path / "s.json")
    assert out["segm/AP"] == 81.0 and out["heads/recall50"] == 0.97 and out["segm/AP75"] is None
    assert out["infer/s_per_field"] == 2.5 and out["infer/heads_per_field"] == 6.5
    assert out["instance_threshold"] == 0.4 and out["infer/graded"] is False
    assert "infer/s_per_field" not in collect_field_metrics(tmp_path / "m.json", None)


@pytest.mark.slow
def test_smoke_run_on_generated_parts_fields(tmp_path) -> None:
    data = tmp_path / "real" / "sperm_parsing"
    data.mkdir(parents=True)
    assert sum(_parts_field(data, seed) for seed in range(8)) > 8
    out = tmp_path / "out"
    fast = ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96", "SOLVER.IMS_PER_BATCH", "2"]
    fast += ["INPUT.CROP.SIZE", "[64, 64]", "INPUT.MIN_SIZE_TRAIN", "(64,)"]
    fast += ["DATALOADER.NUM_WORKERS", "0", "MODEL.RPN.POST_NMS_TOPK_TEST", "20"]
    argv = ["--data", str(data.parent), "--datasets", "sperm_parsing", "--smoke"]
    argv += ["--max-iter", "1", "--output", str(out), "--opts", *fast]
    cmd = [sys.executable, str(SCRIPT), *argv]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((out / "results.json").read_text())
    split = results["datasets"]["sperm_parsing"]["split"]
    assert split["kind"] == "fields" and split["test_images"] >= 1
    assert {"segm/AP", "segm/AP75", "heads/recall50", "heads/gt_heads"} <= set(split["test"])
    assert split["test"]["heads/gt_heads"] > 0 and split["test"]["infer/s_per_field"] > 0
    md = (out / "results.md").read_text()
    assert "sperm_parsing test split" in md and "head recall at mask IoU 0.5" in md
    assert (out / "sperm_parsing" / "split" / "infer" / "report.html").is_file()


@pytest.mark.slow
def test_smoke_run_on_generated_class_folders(tmp_path) -> None:
    data = tmp_path / "real"
    for folder, seeds in (("01_Normal", range(0, 4)), ("02_Tapered", range(4, 8))):
        (data / "hushem" / folder).mkdir(parents=True)
        for s in seeds:
            cv2.imwrite(str(data / "hushem" / folder / f"{s}.png"), _crop(s))
    out = tmp_path / "out"
    fast = [
        "INPUT.MIN_SIZE_TRAIN",
        "(64,)",
        "INPUT.MIN_SIZE_TEST",
        "64",
        "MODEL.RPN.POST_NMS_TOPK_TEST",
        "20",
        "TEST.DETECTIONS_PER_IMAGE",
        "3",
        "DATALOADER.NUM_WORKERS",
        "0",
        "SOLVER.IMS_PER_BATCH",
        "2",
    ]
    argv = [
        "--data",
        str(data),
        "--datasets",
        "hushem,smids",
        "--smoke",
        "--max-iter",
        "1",
        "--kfold",
        "0",
        "--output",
        str(out),
        "--opts",
        *fast,
    ]

    def script(*args: str) -> subprocess.CompletedProcess:
        """The benchmark as users run it (a rerun must reuse what the last run trained)."""
        cmd = [sys.executable, str(SCRIPT), *args]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)

    first = script(*argv)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "$ python tools/train_net.py --resume" in first.stdout  # each step shown as it runs
    results = json.loads((out / "results.json").read_text())
    hushem = results["datasets"]["hushem"]
    assert set(hushem["split"]["test"]) >= {
        "segm/AP",
        "segm/AP50",
        "pixellib/mAP50",
        "accuracy",
        "sensitivity_bad",
        "specificity_bad",
    }
    assert hushem["split"]["test"]["images"] == hushem["split"]["test_images"]
    assert results["datasets"]["smids"]["skipped"].endswith("smids_train: folder not found")
    assert results["meta"]["smoke"] is True
    md = (out / "results.md").read_text()
    assert "hushem test split" in md and "SMOKE RUN" in md
    # a killed benchmark resumes its trainings
    assert "python tools/train_net.py --resume --config-file" in md
    assert (out / "logs" / "hushem_train.log").is_file()
    # a rerun reuses the finished training (evaluation reruns); another schedule is refused
    assert script(*argv).returncode == 0
    rerun = json.loads((out / "results.json").read_text())["datasets"]["hushem"]
    assert rerun["split"]["train"]["reused"] is True
    assert (
        "# finished by an earlier run of this benchmark: reused" in (out / "results.md").read_text()
    )
    assert rerun["split"]["test"]["segm/AP50"] == hushem["split"]["test"]["segm/AP50"]
    other = script(*[a if a != "1" else "2" for a in argv])  # --max-iter 2: not the same run
    assert other.returncode == 1
    assert "real_data.py: hushem failed:" in other.stderr
    assert "trained by another command" in other.stderr
    # a second grader on the same detector: its own folders; --grader-opts reach it alone
    part = "configs/sperm_grader_part_unet_cpu.yaml"
    at = argv.index("--opts")
    grader_args = ["--grader-config", part, "--grader-opts", "SOLVER.BASE_LR", "0.0123"]
    before = (out / "results.json").read_text()
    second = script(*argv[:at], *grader_args, "--protocols", "split", *argv[at:])
    assert second.returncode == 0, second.stdout + second.stderr
    assert (out / "results.json").read_text() == before  # the default grader's results stay
    results = json.loads((out / "results_sperm_grader_part_unet_cpu.json").read_text())
    assert (
        "grader `configs/sperm_grader_part_unet_cpu.yaml` with `SOLVER.BASE_LR 0.0123`"
        in (out / "results_sperm_grader_part_unet_cpu.md").read_text()
    )
    assert (out / "logs" / "hushem_grader_sperm_grader_part_unet_cpu_train.log").is_file()
    split = results["datasets"]["hushem"]["split"]
    assert split["train"]["reused"] is True and split["grader_train"].get("reused") is None
    assert "kfold" not in results["datasets"]["hushem"]
    assert results["meta"]["grader_opts"] == ["SOLVER.BASE_LR", "0.0123"]
    folder = out / "hushem" / "split"
    config = (folder / "grader_sperm_grader_part_unet_cpu" / "config.yaml").read_text()
    assert "BASE_LR: 0.0123" in config and "part_unet" in config
    assert "BASE_LR: 0.0123" not in (folder / "grader" / "config.yaml").read_text()
    assert "BASE_LR: 0.0123" not in (folder / "train" / "config.yaml").read_text()
    assert (
        folder / "eval_graded_sperm_grader_part_unet_cpu" / "folders" / "metrics.json"
    ).is_file()
