"""Input expansion, decoding, video streaming and per-sample totals (no model needed)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from sperm_d2.inference.background import BackgroundWriter, prefetch
from sperm_d2.inference.records import SummaryAccumulator, format_summary_table, pct_good
from sperm_d2.inference.sources import expand_inputs, read_image, read_video_frames, video_info
from sperm_d2.inference.video import VideoSink


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for rel in ("a/x.png", "a/sub/y.jpg", "b/z.png", "b/notes.txt", "c.mp4"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    return tmp_path


def test_expand_inputs_folders_files_globs_and_problems(tree):
    files, problems = expand_inputs(
        [
            str(tree / "a"),
            str(tree / "b" / "z.png"),
            str(tree / "*.mp4"),
            str(tree / "a" / "x.png"),
            str(tree / "b" / "notes.txt"),
            str(tree / "nothing*.png"),
        ]
    )
    by_name = {Path(f.path).name: f for f in files}
    assert sorted(by_name) == ["c.mp4", "x.png", "y.jpg", "z.png"]  # x.png listed once
    assert by_name["y.jpg"].group == "a/sub" and by_name["y.jpg"].relpath == "a/sub/y.jpg"
    assert by_name["x.png"].group == "a" and by_name["z.png"].group == "b"
    assert by_name["c.mp4"].kind == "video" and by_name["x.png"].kind == "image"
    reasons = {Path(p["path"]).name: p["reason"] for p in problems}
    assert "unknown file type" in reasons["notes.txt"] and "no such" in reasons["nothing*.png"]


def test_read_image_reports_problems_as_values(tmp_path):
    good = tmp_path / "g.png"
    cv2.imwrite(str(good), np.zeros((16, 21, 3), np.uint8))
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), np.zeros((16, 21), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"xx")
    (tmp_path / "empty.png").write_bytes(b"")
    assert read_image(good)[0].shape == (16, 21, 3)
    assert read_image(gray)[0].shape == (16, 21, 3)  # grey images become 3-channel
    assert read_image(tmp_path / "bad.png") == (None, read_image(tmp_path / "bad.png")[1])
    assert "decode" in read_image(tmp_path / "bad.png")[1]
    assert read_image(tmp_path / "empty.png")[1] == "empty file"
    assert "cannot read" in read_image(tmp_path / "missing.png")[1]


def test_video_frames_stride_and_info(tmp_path):
    path = tmp_path / "v.avi"
    with VideoSink(path, fps=5) as sink:
        for i in range(7):
            sink.write(np.full((16, 24, 3), i * 30, np.uint8))
    assert sink.frames == 7
    info = video_info(path)
    assert (info["width"], info["height"], info["frames"]) == (24, 16, 7)
    frames = list(read_video_frames(path, stride=3))
    assert [i for i, _ in frames] == [0, 3, 6]
    assert abs(float(frames[1][1].mean()) - 90) < 8  # the right frame, not the next one
    with pytest.raises(ValueError, match="stride"):
        list(read_video_frames(path, stride=0))
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    with pytest.raises(ValueError):
        video_info(tmp_path / "junk.mp4")


def test_video_info_says_empty_or_unreadable_not_corrupt(tmp_path, monkeypatch):
    """A zero-byte video and one the user may not read were both "cannot open video
    (truncated, corrupt or unsupported format)": the skip reason pointed at the wrong fix."""
    import builtins

    from sperm_d2.inference import sources

    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="^empty file$"):
        video_info(tmp_path / "zero.mp4")
    locked = tmp_path / "locked.avi"
    locked.write_bytes(b"RIFF....AVI ")

    def no_read(path, *args, **kwargs):  # as for another user's 0600 file (root reads any)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(sources, "open", no_read, raising=False)
    with pytest.raises(ValueError, match="^cannot read: Permission denied$"):
        video_info(locked)


def test_prefetch_keeps_order_and_writer_reraises():
    assert [r for _, r in prefetch(range(20), lambda x: x * x, ahead=3)] == [
        x * x for x in range(20)
    ]
    assert list(prefetch([], lambda x: x)) == []
    done = []
    with BackgroundWriter(max_pending=2) as w:
        for i in range(10):
            w.submit(done.append, i)
    assert done == list(range(10))
    with pytest.raises(ZeroDivisionError):
        with BackgroundWriter() as w:
            w.submit(lambda: 1 / 0)


def test_summary_totals_per_sample_and_video():
    acc = SummaryAccumulator(("good", "bad"))

    def rec(group, good, bad, border=0):
        counts = {"good": good, "bad": bad}
        return {"group": group, "heads": good + bad + border, "counts": counts}

    acc.add(rec("s1", 3, 1))
    acc.add({**rec("s1", 0, 0, border=2), "heads_at_border": 2})
    acc.add(rec("s2", 1, 1))
    acc.add(rec("clips", 2, 0), video="v.mp4")
    d = acc.as_dict()
    assert d["samples"]["s1"] == {
        "images": 2,
        "images_without_heads": 0,
        "heads": 6,
        "heads_at_border": 2,
        "good": 3,
        "bad": 1,
        "pct_good": 75.0,  # whole heads only: the 2 cut by the border are not graded
        "heads_per_image": 3.0,
    }
    assert d["samples"]["s2"]["pct_good"] == 50.0 and "clips" not in d["samples"]
    assert d["videos"]["v.mp4"]["images"] == 1 and d["videos"]["v.mp4"]["pct_good"] == 100.0
    assert d["total"]["heads"] == 10 and d["total"]["pct_good"] == 75.0
    assert d["total"]["heads_at_border"] == 2
    assert pct_good({"good": 0, "bad": 0}) is None
    table = format_summary_table({"totals": d, "skipped": [{"path": "x"}]}, ("good", "bad"))
    assert "| s1" in table and "75" in table and "video v.mp4" in table and "skipped 1" in table


def test_read_image_refuses_oversized_headers_and_truncated_files(tmp_path):
    from .hostile_inputs import png_header

    (tmp_path / "bomb.png").write_bytes(png_header(100000, 100000))
    (tmp_path / "big.png").write_bytes(png_header(12000, 12000))  # over the limit, under 2x
    good = tmp_path / "g.png"
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8))
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:200])
    assert "limit" in read_image(tmp_path / "bomb.png")[1]
    assert "12000x12000" in read_image(tmp_path / "big.png")[1]
    assert "truncated" in read_image(tmp_path / "cut.png")[1]
    assert read_image(good)[1] is None


def test_check_inputs_refuses_what_names_nothing_and_input_anchors(tree):
    from sperm_d2.inference.sources import check_inputs, input_anchors

    assert len(check_inputs([str(tree / "a"), str(tree / "*.mp4")])) == 3
    with pytest.raises(ValueError, match=r"--input .*nope.*\(and 1 more input like it\)"):
        check_inputs([str(tree / "nope"), str(tree / "b" / "notes.txt"), str(tree / "a")])
    assert input_anchors(str(tree / "a" / "**" / "*.png")) == [tree / "a"]
    assert input_anchors(str(tree / "a")) == [tree / "a"]
    assert input_anchors(str(tree / "b" / "*.png")) == [tree / "b" / "z.png"]


def test_folder_expansion_ignores_hidden_entries(tree):
    (tree / "a" / ".out.x.partial").mkdir()
    (tree / "a" / ".out.x.partial" / "o.png").write_bytes(b"")
    (tree / "a" / ".hidden.png").write_bytes(b"")
    files, _ = expand_inputs([str(tree / "a")])
    assert sorted(Path(f.path).name for f in files) == ["x.png", "y.jpg"]


def test_video_frames_counts_what_was_read(tmp_path):
    from sperm_d2.inference.sources import VideoFrames

    path = tmp_path / "v.avi"
    with VideoSink(path, fps=5) as sink:
        for i in range(7):
            sink.write(np.full((16, 24, 3), i * 30, np.uint8))
    frames = VideoFrames(path, stride=2)
    assert [i for i, _ in frames] == [0, 2, 4, 6] and frames.frames_read == 7


class _ResizingCapture:
    """A cv2.VideoCapture stand-in whose frames change size at frame 3 (a camera switching
    resolution mid-recording, which VideoWriter cannot produce)."""

    def __init__(self, path):
        self.index = 0

    def isOpened(self):
        return True

    def read(self):
        if self.index >= 6:
            return False, None
        size = (16, 24) if self.index < 3 else (32, 48)
        self.index += 1
        return True, np.zeros((*size, 3), np.uint8)

    def grab(self):
        return self.read()[0]

    def release(self):
        pass


def test_video_frames_stop_where_the_frame_size_changes(monkeypatch, tmp_path):
    from sperm_d2.inference import sources
    from sperm_d2.inference.sources import VideoFrames

    monkeypatch.setattr(sources.cv2, "VideoCapture", _ResizingCapture)
    frames = VideoFrames(tmp_path / "v.avi")
    assert [i for i, _ in frames] == [0, 1, 2] and frames.frames_read == 3
    assert frames.size_change == "frame 3 is 48x32 px, the video began at 24x16"


def test_staged_dir_replaces_wholly_or_leaves_everything(tmp_path):
    from sperm_d2.output_folder import check_output_dir, staged_dir

    out = tmp_path / "deep" / "out"
    with pytest.raises(RuntimeError):
        with staged_dir(out) as d:
            (d / "x").write_text("half")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []  # no staging folder, no empty parents
    with staged_dir(out) as d:
        (d / "old.txt").write_text("1")
    with staged_dir(out) as d:
        (d / "new.txt").write_text("2")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in out.parent.iterdir()] == ["out"]
    with pytest.raises(ValueError, match="--overwrite"):
        check_output_dir(out, False, {"new.txt"})
    check_output_dir(out, True, {"new.txt"})
    with pytest.raises(ValueError, match="new.txt"):
        check_output_dir(out, True, {"other"})
    with pytest.raises(ValueError, match="contains --input"):
        check_output_dir(tmp_path, True, set(), keep=[("--input", out / "new.txt")])
