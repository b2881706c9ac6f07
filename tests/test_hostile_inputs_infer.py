"""tools/infer.py and tools/evaluate.py against malformed inputs (issue 11's corpus).

Refused runs assert: exit code 2, exactly one ``infer.py:``/``evaluate.py:`` line on stderr
naming the culprit, no exception escaping ``main`` (no traceback), and the whole test folder
(inputs, models, any earlier output) byte-identical with no file or folder added. Runs with a bad
file among good ones assert exit code 1, the good files processed, the bad one listed (summary or
metrics "skipped"/"incomplete") and warned about once, inputs unchanged, and no staging folder
left. The tools run in-process (``main(argv)``) on the random-weights instant config and tiny
images, so the corpus stays fast.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from pathlib import Path

import cv2
import pytest
import torch

from sperm_d2.config import setup_cfg
from sperm_d2.data.synthetic import render_video_frames

from .conftest import REPO
from .hostile_inputs import fifo_watchdog, load_tool, png_header, run_main, symlink_loop

INFER = load_tool("infer")
EVALUATE = load_tool("evaluate")
QUICK = REPO / "configs" / "quick_schedules"
INSTANT = str(QUICK / "sperm_mask_rcnn_R_50_FPN_instant_test.yaml")
GRADER = str(QUICK / "sperm_grader_instant_test.yaml")
PARTS = str(QUICK / "sperm_parts_instant_test.yaml")
LABELS = str(REPO / "configs" / "labels" / "default.yaml")
FAST = ["--opts", "TEST.DETECTIONS_PER_IMAGE", "3"]


def save_run(folder: Path, config: str) -> None:
    """A training run folder of ``config`` with random weights (config.yaml + model_final.pth)."""
    from detectron2.modeling import build_model

    folder.mkdir(parents=True)
    cfg = setup_cfg(config)
    (folder / "config.yaml").write_text(cfg.dump())
    torch.save({"model": build_model(cfg).state_dict()}, folder / "model_final.pth")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A detector, a grader and a part segmenter run folder (random weights), written once."""
    root = tmp_path_factory.mktemp("models")
    save_run(root / "detector", INSTANT)
    save_run(root / "grader", GRADER)
    save_run(root / "parts", PARTS)
    return root


def make_workspace(root: Path) -> Path:
    """sample/ (2 good 80-px images), crops/ (class folders of 2 + 2), clip.avi (6 frames)."""
    frames = list(render_video_frames(1, 80, 80, 6))
    (root / "sample").mkdir()
    for i in range(2):
        cv2.imwrite(str(root / "sample" / f"ok{i}.png"), frames[i])
    for folder in ("01_Normal", "abnormal"):
        (root / "crops" / folder).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / "crops" / folder / f"c{i}.png"), frames[i + 2])
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")
    writer = cv2.VideoWriter(str(root / "clip.avi"), fourcc, 5, (80, 80))
    for f in frames:
        writer.write(f)
    writer.release()
    return root


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace of tiny inputs (:func:`make_workspace`)."""
    return make_workspace(tmp_path)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones too): file bytes, or ``None`` for a folder."""
    return {str(p): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _write(rel: str, data: bytes):
    def fn(ws: Path) -> None:
        p = ws / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    return fn


def _torch_file(rel: str, obj):
    return lambda ws: torch.save(obj, ws / rel)


def _mkdir(rel: str):
    return lambda ws: (ws / rel).mkdir(parents=True)


def _earlier_output(ws: Path) -> None:
    out = ws / "out"
    (out / "overlays" / "sample").mkdir(parents=True)
    (out / "overlays" / "sample" / "old.png").write_bytes(b"old overlay")
    (out / "summary.json").write_text('{"processed": 1}')


def _copy_run(name: str, rel: str, drop: str = ""):
    def fn(ws: Path, models: Path) -> None:
        shutil.copytree(models / name, ws / rel)
        if drop:
            (ws / rel / drop).unlink()

    return fn


def _bad_checkpoint(name: str, rel: str, checkpoint: str, bad):
    """A copy of the run ``name`` at ``rel`` whose ``checkpoint`` is ``bad`` (bytes, or a function
    of the run's good checkpoint bytes); a ``model_best.pth`` sits beside the good final."""

    def fn(ws: Path, models: Path) -> None:
        shutil.copytree(models / name, ws / rel)
        good = (ws / rel / "model_final.pth").read_bytes()
        (ws / rel / checkpoint).write_bytes(bad(good) if callable(bad) else bad)

    return _needs_models(fn)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _a_list(data: bytes) -> bytes:
    buf = io.BytesIO()
    torch.save([1, 2, 3], buf)
    return buf.getvalue()


def _no_weights(data: bytes) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": 3}, buf)
    return buf.getvalue()


def _needs_models(fn):
    fn.needs_models = True
    return fn


GOOD_IN = ["--input", "{ws}/sample", "--output", "{ws}/out"]
CFG = ["--config-file", INSTANT]
RUN = ["--run", "{models}/detector"]

# (id, setup(ws) or None, argv with {ws}/{models} placeholders, text the one error line holds)
INFER_REFUSED = [
    ("conf_nan", None, [*CFG, *GOOD_IN, "--confidence-threshold", "nan"], "--confidence-thresh"),
    ("conf_inf", None, [*CFG, *GOOD_IN, "--confidence-threshold", "inf"], "--confidence-thresh"),
    ("conf_negative", None, [*CFG, *GOOD_IN, "--confidence-threshold", "-0.1"], "[0, 1]"),
    ("conf_above_one", None, [*CFG, *GOOD_IN, "--confidence-threshold", "1.5"], "[0, 1]"),
    ("conf_text", None, [*CFG, *GOOD_IN, "--confidence-threshold", "high"], "not a number"),
    ("um_nan", None, [*CFG, *GOOD_IN, "--um-per-px", "nan"], "--um-per-px"),
    ("um_negative", None, [*CFG, *GOOD_IN, "--um-per-px", "-1"], "--um-per-px"),
    ("stride_zero", None, [*CFG, *GOOD_IN, "--frame-stride", "0"], "--frame-stride"),
    ("stride_fraction", None, [*CFG, *GOOD_IN, "--frame-stride", "1.5"], "--frame-stride"),
    (
        "input_is_output",
        None,
        [*CFG, "--input", "{ws}/sample", "--output", "{ws}/sample"],
        "is --input",
    ),
    (
        "output_inside_input",
        None,
        [*CFG, "--input", "{ws}/sample", "--output", "{ws}/sample/out"],
        "inside --input",
    ),
    (
        "input_inside_output",
        None,
        [*CFG, "--input", "{ws}/sample", "--output", "{ws}", "--overwrite"],
        "contains --input",
    ),
    (
        "output_holds_glob_matches",
        None,
        [*CFG, "--input", "{ws}/sample/*.png", "--output", "{ws}/sample", "--overwrite"],
        "contains --input",
    ),
    ("input_typo", None, [*CFG, "--input", "{ws}/sampel", "--output", "{ws}/out"], "sampel"),
    ("glob_no_match", None, [*CFG, "--input", "{ws}/*.tiff", "--output", "{ws}/out"], "*.tiff"),
    (
        "input_empty_folder",
        _mkdir("empty"),
        [*CFG, "--input", "{ws}/empty", "--output", "{ws}/out"],
        "empty",
    ),
    (
        "input_unknown_type",
        _write("notes.txt", b"hello"),
        [*CFG, "--input", "{ws}/notes.txt", "--output", "{ws}/out"],
        "notes.txt",
    ),
    ("run_missing", None, ["--run", "{ws}/norun", *GOOD_IN], "--run"),
    ("run_is_file", _write("run.txt", b"x"), ["--run", "{ws}/run.txt", *GOOD_IN], "run.txt"),
    ("run_no_config", _mkdir("run"), ["--run", "{ws}/run", *GOOD_IN], "config.yaml"),
    (
        "run_no_checkpoint",
        _needs_models(_copy_run("detector", "run", drop="model_final.pth")),
        ["--run", "{ws}/run", *GOOD_IN],
        "no checkpoint",
    ),
    ("run_weights_name_missing", None, [*RUN, "--weights", "nope.pth", *GOOD_IN], "nope.pth"),
    ("run_is_a_grader", None, ["--run", "{models}/grader", *GOOD_IN], "--grader"),
    ("run_is_a_part_segmenter", None, ["--run", "{models}/parts", *GOOD_IN], "as --parts"),
    (
        "run_best_checkpoint_truncated",  # no --weights given: the run's checkpoint is named
        _bad_checkpoint("detector", "run", "model_best.pth", _truncated),
        ["--run", "{ws}/run", *GOOD_IN],
        "run/model_best.pth: the --run checkpoint is not a readable torch checkpoint",
    ),
    (
        "parts_checkpoint_truncated",
        _bad_checkpoint("parts", "p", "model_final.pth", _truncated),
        [*RUN, "--parts", "{ws}/p", *GOOD_IN],
        "p/model_final.pth: the part run's checkpoint is not a readable torch checkpoint",
    ),
    (
        "parts_checkpoint_empty",
        _bad_checkpoint("parts", "p", "model_final.pth", b""),
        [*RUN, "--parts", "{ws}/p", *GOOD_IN],
        "p/model_final.pth: the part run's checkpoint file is empty",
    ),
    (
        "parts_checkpoint_not_a_dict",
        _bad_checkpoint("parts", "p", "model_final.pth", _a_list),
        [*RUN, "--parts", "{ws}/p", *GOOD_IN],
        "holds a list, not weights",
    ),
    (
        "parts_checkpoint_holds_no_weights",  # a dict, but {"model": 3}: fvcore would crash
        _bad_checkpoint("parts", "p", "model_final.pth", _no_weights),
        [*RUN, "--parts", "{ws}/p", *GOOD_IN],
        "holds no weights of a part segmenter (no down.* parameters among its 0)",
    ),
    (
        "parts_best_truncated_beside_a_good_final",  # refused, not passed over for the final
        _bad_checkpoint("parts", "p", "model_best.pth", _truncated),
        [*RUN, "--parts", "{ws}/p", *GOOD_IN],
        "p/model_best.pth: the part run's checkpoint is not a readable",
    ),
    ("weights_missing", None, [*CFG, "--weights", "{ws}/no.pth", *GOOD_IN], "no.pth"),
    (
        "weights_garbage",
        _write("w.pth", b"\x00garbage" * 64),
        [*CFG, "--weights", "{ws}/w.pth", *GOOD_IN],
        "w.pth",
    ),
    ("weights_empty", _write("w.pth", b""), [*CFG, "--weights", "{ws}/w.pth", *GOOD_IN], "w.pth"),
    ("weights_folder", _mkdir("w.pth"), [*CFG, "--weights", "{ws}/w.pth", *GOOD_IN], "w.pth"),
    (
        "weights_of_the_grader",
        None,
        [*CFG, "--weights", "{models}/grader/model_final.pth", *GOOD_IN],
        "another model",
    ),
    (
        "weights_of_no_model",
        _torch_file("other.pth", {"model": {"fc.weight": torch.zeros(2)}}),
        [*CFG, "--weights", "{ws}/other.pth", *GOOD_IN],
        "other.pth",
    ),
    ("grader_missing", None, [*CFG, "--grader", "{ws}/nog", *GOOD_IN], "--grader"),
    ("grader_no_config", _mkdir("g"), [*CFG, "--grader", "{ws}/g", *GOOD_IN], "config.yaml"),
    ("grader_is_detector", None, [*CFG, "--grader", "{models}/detector", *GOOD_IN], "head-grader"),
    ("config_missing", None, ["--config-file", "{ws}/nope.yaml", *GOOD_IN], "nope.yaml"),
    ("override_unknown", None, [*CFG, *GOOD_IN, "--opts", "MODEL.NOPE", "1"], "NOPE"),
    (
        "override_class_colors_malformed",
        None,
        [*CFG, *GOOD_IN, "--opts", "SPERM.CLASS_COLORS", "[[1, 2], [3]]"],
        "SPERM.CLASS_COLORS",
    ),
    (
        "override_class_colors_empty",
        None,
        [*CFG, *GOOD_IN, "--opts", "SPERM.CLASS_COLORS", "[]"],
        "SPERM.CLASS_COLORS",
    ),
    (
        "override_threshold_nan",
        None,
        [*CFG, *GOOD_IN, "--opts", "SPERM.CONFIDENCE_THRESHOLD", "nan"],
        "SPERM.CONFIDENCE_THRESHOLD",
    ),
    ("output_is_file", _write("out", b"x"), [*CFG, *GOOD_IN], "not a folder"),
    ("output_reused", _earlier_output, [*CFG, *GOOD_IN], "--overwrite"),
    (
        "output_foreign_with_overwrite",
        _write("out/thesis.docx", b"precious"),
        [*CFG, *GOOD_IN, "--overwrite"],
        "thesis.docx",
    ),
    ("output_is_the_run", None, [*RUN, "--input", "{ws}/sample", "--output", "{models}"], "model"),
    (
        "nothing_processed",
        _write("bad/broken.png", b"\x89PNG\r\n\x1a\n truncated"),
        [*CFG, "--input", "{ws}/bad", "--output", "{ws}/out"],
        "broken.png",
    ),
    (
        "typo_with_reused_output_and_overwrite",
        _earlier_output,
        [*CFG, "--input", "{ws}/sampel", "--output", "{ws}/out", "--overwrite"],
        "sampel",
    ),
]

EVAL_FOLDERS = ["--folders", "{ws}/crops", "--label-map", LABELS, "--output", "{ws}/ev"]

EVAL_REFUSED = [
    ("eval_score_floor_nan", None, [*CFG, *EVAL_FOLDERS, "--score-floor", "nan"], "--score-floor"),
    ("eval_score_floor_two", None, [*CFG, *EVAL_FOLDERS, "--score-floor", "2"], "--score-floor"),
    (
        "eval_folders_missing",
        None,
        [*CFG, "--folders", "{ws}/nope", "--label-map", LABELS, "--output", "{ws}/ev"],
        "nope",
    ),
    (
        "eval_folders_and_dataset",
        None,
        [*CFG, *EVAL_FOLDERS, "--dataset", "sperm_test"],
        "not both",
    ),
    (
        "eval_val_folders_alone",
        None,
        [*CFG, "--val-folders", "{ws}/crops", "--output", "{ws}/ev"],
        "--val-folders",
    ),
    (
        "eval_label_map_missing",
        None,
        [*CFG, "--folders", "{ws}/crops", "--label-map", "{ws}/l.yaml", "--output", "{ws}/ev"],
        "l.yaml",
    ),
    ("eval_unknown_class_folder", _mkdir("crops/weird_class"), [*CFG, *EVAL_FOLDERS], "weird"),
    (
        "eval_folders_without_images",
        _mkdir("empty/01_Normal"),
        [*CFG, "--folders", "{ws}/empty", "--label-map", LABELS, "--output", "{ws}/ev"],
        "no images",
    ),
    (
        "eval_dataset_not_registered",
        None,
        [
            *CFG,
            "--dataset",
            "nope_test",
            "--output",
            "{ws}/ev",
            "--opts",
            "SPERM.DATA_ROOT",
            "{ws}",
        ],
        "nope_test",
    ),
    (
        "eval_dataset_json_broken",
        _write("data/annotations/test.json", b'{"images": ['),
        [*CFG, "--output", "{ws}/ev", "--opts", "SPERM.DATA_ROOT", "{ws}/data"],
        "test.json",
    ),
    (
        "eval_output_inside_folders",
        None,
        [*CFG, "--folders", "{ws}/crops", "--label-map", LABELS, "--output", "{ws}/crops/ev"],
        "inside --folders",
    ),
    ("eval_output_reused", _write("ev/metrics.json", b"{}"), [*CFG, *EVAL_FOLDERS], "--overwrite"),
    ("eval_run_missing", None, ["--run", "{ws}/norun", *EVAL_FOLDERS], "--run"),
    (
        "eval_run_is_a_part_segmenter",
        None,
        ["--run", "{models}/parts", *EVAL_FOLDERS],
        "tools/train_net.py --config-file {models}/parts/config.yaml --eval-only",
    ),
    (
        "eval_weights_garbage",
        _write("w.pth", b"PK\x03\x04 not a zip"),
        [*CFG, "--weights", "{ws}/w.pth", *EVAL_FOLDERS],
        "w.pth",
    ),
    (
        "eval_grader_is_detector",
        None,
        [*CFG, "--grader", "{models}/detector", *EVAL_FOLDERS],
        "head-grader",
    ),
    (
        "eval_all_images_unreadable",
        _write("bad/01_Normal/x.png", b"\x89PNG\r\n\x1a\n truncated"),
        [*CFG, "--folders", "{ws}/bad", "--label-map", LABELS, "--output", "{ws}/ev", *FAST],
        "nothing evaluated",
    ),
]

CASES = [("infer", *c) for c in INFER_REFUSED] + [("evaluate", *c) for c in EVAL_REFUSED]


def _argv(argv: list[str], ws: Path, models: Path) -> list[str]:
    return [a.replace("{ws}", str(ws)).replace("{models}", str(models)) for a in argv]


@pytest.mark.parametrize("tool, case, setup, argv, culprit", CASES, ids=[c[1] for c in CASES])
def test_refused_runs_are_one_line_and_write_nothing(
    models, ws, tool, case, setup, argv, culprit
) -> None:
    if setup is not None:
        setup(ws, models) if getattr(setup, "needs_models", False) else setup(ws)
    before, models_before = snapshot(ws), snapshot(models)
    res = run_main((INFER if tool == "infer" else EVALUATE).main, _argv(argv, ws, models))
    assert res.exception is None, repr(res.exception)
    assert "Traceback" not in res.stderr
    lines = res.lines(f"{tool}.py")
    assert len(lines) == 1, res.stderr
    assert _argv([culprit], ws, models)[0] in lines[0], lines[0]
    assert res.code == 2, lines[0]
    assert snapshot(ws) == before  # inputs unchanged, nothing added: no output, no empty folder
    assert snapshot(models) == models_before


def _skips(caplog, name: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and name in r.getMessage()
    ]


def _no_staging_left(ws: Path) -> None:
    assert not [p for p in ws.rglob(".*") if p.name.endswith((".partial", ".old"))]


def test_bad_images_in_a_folder_are_skipped_and_listed(models, ws, caplog) -> None:
    (ws / "sample" / "bomb.png").write_bytes(png_header(100000, 100000))
    (ws / "sample" / "big.png").write_bytes(png_header(20000, 20000))  # under OpenCV's limit
    good = (ws / "sample" / "ok0.png").read_bytes()
    (ws / "sample" / "cut.png").write_bytes(good[: len(good) // 2])
    before = snapshot(ws / "sample")
    argv = _argv([*RUN, *GOOD_IN, "--confidence-threshold", "0", *FAST], ws, models)
    with caplog.at_level(logging.WARNING):
        res = run_main(INFER.main, argv)
    assert res.exception is None and res.code == 1, res.stderr
    assert not res.lines("infer.py")
    summary = json.loads((ws / "out" / "summary.json").read_text())
    assert summary["images_processed"] == 2
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"bomb.png", "big.png", "cut.png"}
    assert "10000000000 pixels" in skipped["bomb.png"]  # 100000 x 100000
    assert "400000000 pixels" in skipped["big.png"]
    for name in skipped:
        assert len(_skips(caplog, name)) == 1
    assert sorted(p.name for p in (ws / "out" / "overlays" / "sample").iterdir()) == [
        "ok0.png",
        "ok1.png",
    ]
    assert snapshot(ws / "sample") == before
    _no_staging_left(ws)


def test_truncated_video_says_how_many_frames_were_read(models, ws, caplog) -> None:
    data = (ws / "clip.avi").read_bytes()
    (ws / "cut.avi").write_bytes(data[: len(data) * 3 // 5])
    argv = _argv([*CFG, "--input", "{ws}/cut.avi", "--output", "{ws}/out", *FAST], ws, models)
    with caplog.at_level(logging.WARNING):
        res = run_main(INFER.main, argv)
    assert res.exception is None and res.code == 1, res.stderr
    summary = json.loads((ws / "out" / "summary.json").read_text())
    [entry] = summary["incomplete"]
    assert entry["frames_expected"] == 6 and 0 < entry["frames_read"] < 6
    assert summary["video_frames_processed"] == entry["frames_read"]
    assert len(_skips(caplog, "cut.avi")) == 1 and "of the 6 frames" in _skips(caplog, "cut.avi")[0]


def test_overwrite_replaces_an_earlier_output_wholly(models, ws) -> None:
    _earlier_output(ws)
    argv = _argv([*CFG, *GOOD_IN, "--overwrite", *FAST], ws, models)
    res = run_main(INFER.main, argv)
    assert res.exception is None and res.code == 0, res.stderr
    assert not (ws / "out" / "overlays" / "sample" / "old.png").exists()  # nothing mixed
    assert json.loads((ws / "out" / "summary.json").read_text())["images_processed"] == 2
    _no_staging_left(ws)


def test_evaluate_skips_a_bad_crop_and_lists_it(models, ws, caplog) -> None:
    (ws / "crops" / "abnormal" / "bomb.png").write_bytes(png_header(100000, 100000))
    before = snapshot(ws / "crops")
    argv = _argv([*CFG, *EVAL_FOLDERS, "--score-floor", "0", *FAST], ws, models)
    with caplog.at_level(logging.WARNING):
        res = run_main(EVALUATE.main, argv)
    assert res.exception is None and res.code == 1, res.stderr
    metrics = json.loads((ws / "ev" / "metrics.json").read_text())
    assert metrics["test"]["images"] == 4
    assert [Path(s["path"]).name for s in metrics["skipped"]] == ["bomb.png"]
    assert len(_skips(caplog, "bomb.png")) == 1
    assert snapshot(ws / "crops") == before
    _no_staging_left(ws)


def test_output_beside_the_files_of_a_glob_is_fine(models, ws) -> None:
    argv = _argv(
        [*CFG, "--input", "{ws}/sample/*.png", "--output", "{ws}/sample/out", *FAST], ws, models
    )
    res = run_main(INFER.main, argv)
    assert res.exception is None and res.code == 0, res.stderr
    assert json.loads((ws / "sample" / "out" / "summary.json").read_text())["images_processed"] == 2


def test_special_files_are_skipped_and_listed_never_waited_on(models, ws, caplog) -> None:
    """A FIFO named like an image or video (reading it blocks for ever), a symlink loop and a
    broken symlink, in a folder and named on the command line: each skipped with its reason and
    listed, the run goes on (not hung, not silently dropped, not stopped by a symlink loop)."""
    sample, extra = ws / "sample", ws / "extra"
    extra.mkdir()
    symlink_loop(sample / "loop.png")
    symlink_loop(extra / "loop2.png")
    os.symlink(ws / "no_such.png", sample / "dangling.png")
    (sample / "folder.png").mkdir()  # a folder named like an image is a folder: searched
    fifos = [sample / "pipe.png", sample / "pipe.avi", extra / "pipe2.jpg"]
    args = ["--input", "{ws}/sample", "{ws}/extra/pipe2.jpg", "{ws}/extra/loop2.png"]
    argv = _argv([*RUN, *args, "--output", "{ws}/out", *FAST], ws, models)
    with fifo_watchdog(fifos) as fired, caplog.at_level(logging.WARNING):
        before = snapshot(sample)
        res = run_main(INFER.main, argv)
    assert not fired.is_set(), "a FIFO was opened and read"
    assert res.exception is None and res.code == 1, (res.exception, res.stderr)
    summary = json.loads((ws / "out" / "summary.json").read_text())
    assert summary["images_processed"] == 2
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"loop.png", "loop2.png", "dangling.png"} | {f.name for f in fifos}
    for name in ("pipe.png", "pipe.avi", "pipe2.jpg"):
        assert "FIFO" in skipped[name], skipped[name]
    assert "symbolic links" in skipped["loop.png"] and "No such file" in skipped["dangling.png"]
    for name in skipped:
        assert len(_skips(caplog, name)) == 1
    assert snapshot(sample) == before
    _no_staging_left(ws)


def test_evaluate_skips_a_fifo_among_the_crops(models, ws, caplog) -> None:
    argv = _argv([*CFG, *EVAL_FOLDERS, "--score-floor", "0", *FAST], ws, models)
    with fifo_watchdog([ws / "crops" / "abnormal" / "pipe.png"]) as fired:
        with caplog.at_level(logging.WARNING):
            res = run_main(EVALUATE.main, argv)
    assert not fired.is_set(), "a FIFO was opened and read"
    assert res.exception is None and res.code == 1, (res.exception, res.stderr)
    metrics = json.loads((ws / "ev" / "metrics.json").read_text())
    assert metrics["test"]["images"] == 4
    [entry] = metrics["skipped"]
    assert Path(entry["path"]).name == "pipe.png" and "FIFO" in entry["reason"]
    _no_staging_left(ws)


def test_ctrl_c_is_one_line_and_leaves_nothing(models, ws, monkeypatch) -> None:
    """Ctrl-C (KeyboardInterrupt in the main thread) in the middle of writing the outputs: one
    line and exit 130, no traceback, no staging folder or temporary file, no output folder."""
    from sperm_d2.inference import job as infer_job

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(infer_job._Outputs, "add", interrupt)
    before = snapshot(ws)
    res = run_main(INFER.main, _argv([*CFG, *GOOD_IN, "--labelme", *FAST], ws, models))
    assert res.exception is None, repr(res.exception)
    (line,) = res.lines("infer.py")
    assert "interrupted" in line and res.code == 130, line
    assert snapshot(ws) == before  # no output, no .partial folder, no .tmp file
