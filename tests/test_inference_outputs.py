"""run_inference end to end (in process, random weights): a 10-frame video round trip,
corrupt files skipped and reported, and labelme export reloaded through the data converter."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

from sperm_d2.config import setup_cfg
from sperm_d2.data.convert import ConvertContext, convert_labelme_file
from sperm_d2.data.labelme_io import read_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.synthetic import render_video_frames
from sperm_d2.inference import ImagePrediction, InferOptions, SpermPredictor, run_inference
from sperm_d2.inference.labelme_export import export_labelme
from sperm_d2.inference.video import predict_video

from .conftest import REPO

INSTANT = str(REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml")


@pytest.fixture(scope="module")
def predictor() -> SpermPredictor:
    torch.manual_seed(0)
    # DETECTIONS_PER_IMAGE 5 keeps the random-weight heads running but the test quick.
    return SpermPredictor(
        setup_cfg(INSTANT, ["TEST.DETECTIONS_PER_IMAGE", "5"]), score_threshold=0.0
    )


def write_video(path: Path, n: int = 10, size: int = 96) -> list[np.ndarray]:
    frames = list(render_video_frames(0, size, size, n))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size, size))
    try:
        for f in frames:
            writer.write(f)
    finally:
        writer.release()
    return frames


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def count_frames(path: Path) -> tuple[int, tuple]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return n, shape
            n, shape = n + 1, frame.shape
    finally:
        cap.release()


@pytest.mark.parametrize("stride", [1, 3])
def test_video_round_trip(predictor, tmp_path, stride):
    video = tmp_path / "clip.mp4"
    write_video(video, 10)
    out = tmp_path / "out"
    summary = run_inference(predictor, [str(video)], InferOptions(out, frame_stride=stride))
    expected = list(range(0, 10, stride))
    assert summary["processed"] == 1 and summary["video_frames_processed"] == len(expected)
    records = read_jsonl(out / "images.jsonl")
    assert [r["frame"] for r in records] == expected
    assert all(r["heads"] == 5 for r in records)
    per_video = summary["totals"]["videos"]["clip.mp4"]
    assert per_video["images"] == len(expected) and per_video["heads"] == 5 * len(expected)
    n, shape = count_frames(out / "videos" / "clip_annotated.mp4")
    assert n == len(expected) and shape == (96, 96, 3)
    rows = (out / "instances.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 * len(expected)


def test_video_is_streamed_lazily(predictor, tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, 10)
    stream = predict_video(predictor, video)
    frame, pred = next(stream)  # nothing but the first frame has been read and predicted
    assert pred.frame == 0 and frame.shape == (96, 96, 3)
    stream.close()  # runs the generator's finally: the capture is released


def test_corrupt_files_are_skipped_listed_and_never_fatal(
    predictor, tiny_dataset, tmp_path, caplog
):
    folder = tmp_path / "sampleA"
    folder.mkdir()
    records = DatasetCatalog.get(tiny_dataset.names["val"])[:2]
    for i, r in enumerate(records):
        (folder / f"ok{i}.png").write_bytes(Path(r["file_name"]).read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "empty.jpg").write_bytes(b"")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    inputs = [str(folder), str(tmp_path / "bad.mp4"), str(tmp_path / "missing_dir")]
    summary = run_inference(predictor, inputs, InferOptions(tmp_path / "out"))
    assert summary["images_processed"] == 2 and summary["processed"] == 2
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"broken.png", "empty.jpg", "bad.mp4", "missing_dir"}
    assert "decode" in skipped["broken.png"] and skipped["empty.jpg"] == "empty file"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for name in skipped:
        assert sum(name in w and "\n" not in w for w in warnings) == 1
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(on_disk["skipped"]) == 4 and on_disk["totals"]["samples"]["sampleA"]["images"] == 2
    assert sorted(p.name for p in (tmp_path / "out" / "overlays" / "sampleA").iterdir()) == [
        "ok0.png",
        "ok1.png",
    ]


def test_nothing_processed_is_reported(predictor, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"junk")
    summary = run_inference(predictor, [str(tmp_path / "broken.png")], InferOptions(tmp_path / "o"))
    assert summary["processed"] == 0 and len(summary["skipped"]) == 1


def ellipse(h, w, cx, cy, a, b, angle) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (cx, cy), (a, b), angle, 0, 360, 1, -1)
    return m.astype(bool)


def test_labelme_export_reloads_through_the_converter(tmp_path):
    h, w = 96, 128
    image = np.full((h, w, 3), 200, np.uint8)
    src = tmp_path / "src" / "crop.png"
    src.parent.mkdir()
    cv2.imwrite(str(src), image)
    masks = np.stack([ellipse(h, w, 30, 40, 14, 9, 20), ellipse(h, w, 90, 50, 16, 6, 120)])
    pred = ImagePrediction(
        source=str(src),
        image_size=(h, w),
        boxes=np.array([[16, 31, 44, 49], [75, 36, 105, 64]], np.float32),
        masks=masks,
        scores=np.array([0.9, 0.7], np.float32),
        classes=np.array([0, 1]),
        class_names=("good", "bad"),
    )
    json_path = export_labelme(pred, tmp_path / "labelme" / "crop.png", image_src=src)
    assert (tmp_path / "labelme" / "crop.png").read_bytes() == src.read_bytes()
    doc = read_labelme_json(json_path)
    assert [s.label for s in doc.shapes] == ["good", "bad"] and (doc.height, doc.width) == (h, w)
    ctx = ConvertContext(
        input_root=tmp_path / "labelme",
        output_root=tmp_path / "labelme",
        label_map=LabelMap.load(REPO / "configs/labels/default.yaml"),
    )
    res = convert_labelme_file(json_path, ctx)
    assert res.ok, res.problems
    assert [i["class"] for i in res.instances] == ["good", "bad"]
    for inst, mask in zip(res.instances, masks):
        assert inst["area"] == pytest.approx(mask.sum(), rel=0.12)


def test_outputs_inside_the_input_folder_are_not_inputs(predictor, tiny_dataset, tmp_path):
    record = DatasetCatalog.get(tiny_dataset.names["val"])[0]
    (tmp_path / "a.png").write_bytes(Path(record["file_name"]).read_bytes())
    for _ in range(2):  # the second run sees the first run's overlays under tmp_path/out
        summary = run_inference(predictor, [str(tmp_path)], InferOptions(tmp_path / "out"))
        assert summary["images_processed"] == 1
