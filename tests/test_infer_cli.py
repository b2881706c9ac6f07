"""CLI smoke tests of tools/infer.py (random weights): a folder with a broken file + a video."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from sperm_d2.data.synthetic import render_video_frames

from .conftest import REPO

INSTANT = str(REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml")


def run_infer(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "tools/infer.py"), "--config-file", INSTANT, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.slow
def test_infer_cli_folder_with_broken_file_and_video(tmp_path):
    sample = tmp_path / "sample_A"
    sample.mkdir()
    frames = list(render_video_frames(1, 96, 96, 6))
    for i, f in enumerate(frames[:2]):
        cv2.imwrite(str(sample / f"crop{i}.png"), f)
    (sample / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 96))
    for f in frames:
        writer.write(f)
    writer.release()
    out = tmp_path / "out"
    proc = run_infer(
        "--input",
        str(sample),
        str(video),
        "--output",
        str(out),
        "--confidence-threshold",
        "0",
        "--frame-stride",
        "2",
        "--um-per-px",
        "0.1",
        "--labelme",
        "--opts",
        "TEST.DETECTIONS_PER_IMAGE",
        "3",
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # processed, but a file was skipped
    assert "sample_A" in proc.stdout and "% good" in proc.stdout and "TOTAL" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert len(warnings) == 1 and "broken.jpg" in warnings[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_processed"] == 2 and summary["video_frames_processed"] == 3
    assert [s["path"] for s in summary["skipped"]] == [str(sample / "broken.jpg")]
    assert summary["totals"]["samples"]["sample_A"]["heads"] == 6
    header = (out / "instances.csv").read_text().splitlines()[0].split(",")
    assert {"file", "frame", "class", "score", "length_um", "who_flags"} <= set(header)
    assert (out / "overlays" / "sample_A" / "crop0.png").is_file()
    assert (out / "videos" / "clip_annotated.mp4").is_file()
    assert (out / "labelme" / "sample_A" / "crop1.json").is_file()
    assert (out / "labelme" / "clip" / "frame_000004.json").is_file()
    lines = (out / "images.jsonl").read_text().splitlines()
    assert len(lines) == 5


def test_infer_cli_exit_code_is_2_and_nothing_written_when_nothing_was_processed(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    proc = run_infer("--input", str(tmp_path / "bad.png"), "--output", str(tmp_path / "o" / "p"))
    assert proc.returncode == 2
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("infer.py: ")]
    assert "nothing processed" in line and "bad.png" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]  # no o/, no o/p/


@pytest.mark.slow
def test_infer_cli_clean_run_exits_0_and_rerun_needs_overwrite(tmp_path):
    frame = next(iter(render_video_frames(1, 64, 64, 1)))
    cv2.imwrite(str(tmp_path / "a.png"), frame)
    out = tmp_path / "out"
    args = ("--input", str(tmp_path / "a.png"), "--output", str(out))
    assert run_infer(*args).returncode == 0
    first = (out / "summary.json").read_bytes()
    proc = run_infer(*args)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert (out / "summary.json").read_bytes() == first
    assert run_infer(*args, "--overwrite").returncode == 0
    assert np.isfinite(json.loads((out / "summary.json").read_text())["seconds"])
