"""Synthetic files on disk: single-head crops in class folders and videos, from the package and
through tools/make_synthetic.py."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from sperm_d2.data.synthetic import render_scene
from sperm_d2.data.synthetic_io import make_synthetic_crops, write_synthetic_video

from .conftest import REPO


def _make_synthetic(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "tools/make_synthetic.py", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_crops_land_in_class_folders(tmp_path) -> None:
    counts = make_synthetic_crops(tmp_path, num_crops=6, size=128)
    for split, seed0 in (("val", 5000), ("test", 6000)):
        c = counts[split]
        assert c["normal"] + c["abnormal"] + c["skipped"] == 6 and c["skipped"] == 0
        names = set()
        for folder in ("normal", "abnormal"):
            files = sorted((tmp_path / split / folder).glob("*.png"))
            assert len(files) == c[folder]
            for f in files:
                scene = int(f.stem.removeprefix("crop_"))
                assert seed0 <= scene < seed0 + 6
                img = cv2.imread(str(f))
                expected, heads = render_scene(scene, 128, 128, num_heads=1)
                assert np.array_equal(img, expected)  # PNG is lossless: the rendered scene
                assert folder == ("normal" if heads[0][0] == "good" else "abnormal")
                names.add(f.name)
        assert len(names) == 6
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind
    with pytest.raises(ValueError, match="num_crops"):
        make_synthetic_crops(tmp_path / "x", num_crops=1001)


def test_video_has_requested_frames(tmp_path) -> None:
    path = write_synthetic_video(tmp_path / "v" / "clip.mp4", num_frames=5, height=64, width=96)
    cap = cv2.VideoCapture(str(path))
    try:
        assert cap.isOpened()
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    assert len(frames) == 5 and frames[0].shape == (64, 96, 3)
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]  # temp file renamed away


def test_cli_crops_and_video(tmp_path) -> None:
    p = _make_synthetic("--output", tmp_path / "crops", "--crops", 3)
    assert p.returncode == 0, p.stderr
    files = [f.relative_to(tmp_path / "crops").parts for f in (tmp_path / "crops").rglob("*")]
    files = sorted(parts for parts in files if len(parts) == 3)  # split/class/file
    assert [split for split, _, _ in files].count("val") == 3 and len(files) == 6
    assert {cls for _, cls, _ in files} <= {"normal", "abnormal"}
    assert {name for _, _, name in files} >= {"crop_5000.png", "crop_6002.png"}

    video = tmp_path / "clip.mp4"
    p = _make_synthetic("--output", video, "--video", 4, "--frame-size", 48, 64, "--seed", 7)
    assert p.returncode == 0, p.stderr
    cap = cv2.VideoCapture(str(video))
    try:
        assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    finally:
        cap.release()


def test_cli_rejects_options_that_do_not_apply(tmp_path) -> None:
    p = _make_synthetic("--output", tmp_path / "v.mp4", "--video", 3, "--size", 64)
    assert p.returncode == 2 and "--frame-size" in p.stderr
    p = _make_synthetic("--output", tmp_path / "c", "--crops", 3, "--fps", 5)
    assert p.returncode == 2 and "only apply to --video" in p.stderr
    p = _make_synthetic("--output", tmp_path / "c", "--crops", 3, "--video", 3)
    assert p.returncode == 2 and "not allowed with" in p.stderr
    assert not (tmp_path / "c").exists()


# (id, arguments ({tmp}: the test folder, which holds a file "f.avi"), text of the error line)
SYNTHETIC_REFUSED = [
    ("no_images", ["--output", "{tmp}/o", "--num-images", "0"], "--num-images 0"),
    ("negative_images", ["--output", "{tmp}/o", "--num-images", "-3"], "--num-images -3"),
    ("size_tiny", ["--output", "{tmp}/o", "--num-images", "1", "--size", "3"], "--size 3"),
    ("size_astronomic", ["--output", "{tmp}/o", "--size", "99999999"], "--size 99999999"),
    ("crop_size_tiny", ["--output", "{tmp}/o", "--crops", "1", "--size", "4"], "--size 4"),
    ("frame_tiny", ["--output", "{tmp}/v.mp4", "--video", "2", "--frame-size", "2", "2"], "2 2"),
    ("seed_negative", ["--output", "{tmp}/o", "--num-images", "1", "--seed", "-1"], "--seed -1"),
    ("output_a_file", ["--output", "{tmp}/f.avi", "--num-images", "1"], "not a folder"),
    ("crops_into_a_file", ["--output", "{tmp}/f.avi", "--crops", "1"], "not a folder"),
    ("video_not_a_video_name", ["--output", "{tmp}/v.txt", "--video", "2"], ".mp4 or .avi"),
    ("video_into_a_folder", ["--output", "{tmp}", "--video", "2"], "is a folder"),
    ("fps_zero", ["--output", "{tmp}/v.mp4", "--video", "2", "--fps", "0"], "--fps"),
    ("fps_nan", ["--output", "{tmp}/v.mp4", "--video", "2", "--fps", "nan"], "--fps"),
]


@pytest.mark.parametrize(
    "case, argv, culprit", SYNTHETIC_REFUSED, ids=[c[0] for c in SYNTHETIC_REFUSED]
)
def test_cli_refuses_what_it_cannot_draw_in_one_line(tmp_path, case, argv, culprit) -> None:
    """Arguments the generator cannot draw: one line naming the argument, exit 2, nothing
    written (they were tracebacks, a silently empty folder, or an error naming a temporary
    file)."""
    from .hostile_inputs import load_tool, run_main, tree_hashes

    (tmp_path / "f.avi").write_bytes(b"not mine to replace")
    before = tree_hashes(tmp_path)
    res = run_main(load_tool("make_synthetic").main, [a.format(tmp=tmp_path) for a in argv])
    assert res.exception is None and "Traceback" not in res.stderr, res.stderr
    (line,) = res.lines("make_synthetic.py")
    assert culprit in line and res.code == 2, line
    assert sorted(tmp_path.iterdir()) == [tmp_path / "f.avi"] and tree_hashes(tmp_path) == before
