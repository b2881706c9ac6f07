"""SpermPredictor on random weights: output schema, Instances conversion, batching, run folders."""

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

from sperm_d2.config import setup_cfg
from sperm_d2.inference import ImagePrediction, SpermPredictor, from_instances
from sperm_d2.inference.types import empty_prediction

from .conftest import REPO

INSTANT = str(REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml")


@pytest.fixture(scope="module")
def predictor() -> SpermPredictor:
    # Random GN weights score every class ~1/3: a zero threshold makes the box and mask heads run.
    torch.manual_seed(0)
    return SpermPredictor(setup_cfg(INSTANT), score_threshold=0.0)


def image_paths(tiny_dataset, n: int, split: str = "train") -> list[str]:
    return [r["file_name"] for r in DatasetCatalog.get(tiny_dataset.names[split])][:n]


def images(tiny_dataset, n: int) -> list[np.ndarray]:
    return [cv2.imread(p) for p in image_paths(tiny_dataset, n)]


def check_schema(pred: ImagePrediction, h: int, w: int) -> None:
    n = len(pred)
    assert pred.image_size == (h, w)
    assert pred.boxes.shape == (n, 4) and pred.boxes.dtype == np.float32
    assert pred.masks.shape == (n, h, w) and pred.masks.dtype == bool
    assert pred.scores.shape == (n,) and pred.scores.dtype == np.float32
    assert pred.classes.shape == (n,) and pred.classes.dtype == np.int64
    assert np.all(np.diff(pred.scores) <= 0), "scores are sorted, highest first"
    assert np.all((pred.classes >= 0) & (pred.classes < len(pred.class_names)))


def test_predictor_output_schema_on_random_weights(predictor, tiny_dataset):
    image = images(tiny_dataset, 1)[0]
    pred = predictor(image, source="x.png")
    assert isinstance(pred, ImagePrediction) and pred.source == "x.png" and pred.frame is None
    check_schema(pred, *image.shape[:2])
    assert len(pred) > 0, "with a zero threshold the heads must produce detections"
    assert pred.class_names == ("good", "bad")
    assert sum(pred.counts().values()) == len(pred)
    assert len(pred.above(1.01)) == 0 and len(pred.top(2)) == min(2, len(pred))
    # The test size comes from the config (64 px here), not detectron2's default 800.
    assert list(predictor.resize.short_edge_length) == [64, 64]
    assert predictor.batch_size == 0  # auto: measured per stream (test_inference_batch_size)


def test_from_instances_converts_and_sorts_hand_built_instances():
    inst = Instances((20, 30))
    inst.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 5.0, 6.0], [10.0, 10.0, 20.0, 18.0]]))
    inst.scores = torch.tensor([0.3, 0.9])
    inst.pred_classes = torch.tensor([0, 1])
    masks = torch.zeros(2, 20, 30, dtype=torch.bool)
    masks[0, 2:6, 1:5] = True
    masks[1, 10:18, 10:20] = True
    inst.pred_masks = masks
    pred = from_instances(inst, "a.png", ("good", "bad"), frame=7)
    check_schema(pred, 20, 30)
    assert pred.frame == 7 and pred.labels == ["bad", "good"]
    np.testing.assert_allclose(pred.scores, [0.9, 0.3])
    np.testing.assert_allclose(pred.boxes[0], [10, 10, 20, 18])
    assert pred.masks[0].sum() == 80 and pred.masks[1].sum() == 16
    # A box-only model: masks become the filled boxes.
    inst.remove("pred_masks")
    boxes_only = from_instances(inst, "a.png", ("good", "bad"))
    assert boxes_only.masks[1].sum() == 16 and boxes_only.masks[1][2:6, 1:5].all()


def test_empty_prediction_schema():
    pred = empty_prediction("e.png", (12, 9), ("good", "bad"))
    check_schema(pred, 12, 9)
    assert len(pred) == 0 and pred.counts() == {"good": 0, "bad": 0}


def test_batched_equals_single(predictor, tiny_dataset):
    ims = images(tiny_dataset, 3)  # same size: no padding differences between the two paths
    singles = [predictor(im) for im in ims]
    batched = predictor.predict_batch(ims)
    for s, b in zip(singles, batched):
        assert len(s) == len(b) > 0
        np.testing.assert_array_equal(s.classes, b.classes)
        np.testing.assert_allclose(s.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(s.boxes, b.boxes, atol=1e-2)
        assert (s.masks == b.masks).mean() > 0.999


def test_stream_batches_keep_order(predictor, tiny_dataset):
    ims = images(tiny_dataset, 3)
    two = SpermPredictor.__new__(SpermPredictor)
    two.__dict__.update(predictor.__dict__, batch_size=2)
    out = list(two.predict_stream((f"s{i}", i, im) for i, im in enumerate(ims)))
    assert [p.frame for _, p in out] == [0, 1, 2] and [p.source for _, p in out] == [
        "s0",
        "s1",
        "s2",
    ]
    assert all(im is src for (im, _), src in zip(out, ims))


def test_from_run_folder_loads_the_saved_weights(predictor, tiny_dataset, tmp_path):
    (tmp_path / "config.yaml").write_text(predictor.cfg.dump())
    torch.save({"model": predictor.model.state_dict()}, tmp_path / "model_final.pth")
    loaded = SpermPredictor.from_run(tmp_path, score_threshold=0.0)
    assert loaded.weights.endswith("model_final.pth")
    image = images(tiny_dataset, 1)[0]
    a, b = predictor(image), loaded(image)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        SpermPredictor.from_run(tmp_path, checkpoint="model_best.pth")


def test_paths_with_a_corrupt_file_are_skipped_not_fatal(predictor, tiny_dataset, tmp_path):
    good = image_paths(tiny_dataset, 2, "val")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    out = list(predictor.predict_paths([good[0], broken, good[1]]))
    assert [o[0] for o in out] == [str(good[0]), str(broken), str(good[1])]
    assert out[1][1] is None and "decode" in out[1][2]
    assert out[0][1] is not None and out[2][1] is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_auto_batches_match_cpu(predictor, tiny_dataset):
    cfg = predictor.cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cuda"
    gpu = SpermPredictor(cfg, score_threshold=0.0)
    gpu.model.load_state_dict(predictor.model.state_dict())
    assert gpu.batch_size == 0  # auto
    ims = images(tiny_dataset, 4) * 6  # 24 images: calibration passes of 1, 2, 4 and 8
    stream = [(str(i), None, im) for i, im in enumerate(ims)]
    for c, (_, g) in zip([predictor(im) for im in ims], gpu.predict_stream(stream)):
        assert len(c) == len(g)
        np.testing.assert_allclose(c.scores, g.scores, atol=1e-3)
