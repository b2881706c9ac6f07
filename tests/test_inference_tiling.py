"""Large fields read in windows (sperm_d2.inference.tiling): window layout, merging across
windows without duplicates, and the predictor's choice of when to tile."""

import cv2
import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from sperm_d2.config import setup_cfg
from sperm_d2.inference import SpermPredictor
from sperm_d2.inference.tiling import Window, merge_windows, tile_windows
from sperm_d2.inference.types import ImagePrediction

from .conftest import REPO

INSTANT = str(REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml")
NAMES = ("good", "bad")


def test_windows_cover_the_image_with_the_overlap_and_full_size_windows():
    wins = tile_windows(250, 400, 128, 32)
    cover = np.zeros((250, 400), int)
    for w in wins:
        assert w.y1 - w.y0 == 128 and w.x1 - w.x0 == 128  # full-size even at the border
        cover[w.y0 : w.y1, w.x0 : w.x1] += 1
    assert cover.min() >= 1
    xs = sorted({w.x0 for w in wins})
    assert all(b - a <= 128 - 32 for a, b in zip(xs, xs[1:]))  # neighbours overlap >= 32
    assert tile_windows(100, 90, 128, 32) == [Window(0, 0, 100, 90)]  # smaller than a window
    with pytest.raises(ValueError):
        tile_windows(100, 100, 64, 64)


def _square_detector(crop: np.ndarray, source: str, scores=None) -> ImagePrediction:
    """Every white blob of ``crop`` as one detection (what a perfect model would see)."""
    n, labels = cv2.connectedComponents((crop[:, :, 0] > 127).astype(np.uint8))
    masks = (
        np.stack([labels == i for i in range(1, n)])
        if n > 1
        else np.zeros((0,) + labels.shape, bool)
    )
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    k = len(masks)
    return ImagePrediction(
        source=source,
        image_size=labels.shape,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        masks=masks,
        scores=np.linspace(0.9, 0.5, k).astype(np.float32),
        classes=np.zeros(k, np.int64),
        class_names=NAMES,
    )


def _field(h=300, w=420) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A black field with 20x30 white heads: inside one window, across a window edge, in the
    overlap of four windows, and cut by the image border."""
    image = np.zeros((h, w, 3), np.uint8)
    heads = [(10, 10, 30, 40), (90, 110, 110, 140), (140, 200, 160, 230), (280, 380, 300, 410)]
    for y0, x0, y1, x1 in heads:
        image[y0:y1, x0:x1] = 255
    return image, heads


def test_merge_keeps_each_head_once_and_whole():
    image, heads = _field()
    wins = tile_windows(*image.shape[:2], 128, 48)
    parts = [(w, _square_detector(image[w.y0 : w.y1, w.x0 : w.x1], "f.png")) for w in wins]
    assert sum(len(p) for _, p in parts) > len(heads)  # heads are seen by several windows
    merged = merge_windows(parts, image.shape[:2], "f.png", NAMES)
    assert len(merged) == len(heads)
    assert merged.masks.shape == (len(heads), *image.shape[:2])
    found = sorted(tuple(int(v) for v in b[[1, 0, 3, 2]]) for b in merged.boxes)
    assert found == sorted(heads)  # whole heads, shifted back into image pixels
    for m, b in zip(merged.masks, merged.boxes):
        assert m.sum() == (b[2] - b[0]) * (b[3] - b[1])
    assert np.all(np.diff(merged.scores) <= 0)
    empty = merge_windows(
        [(wins[0], _square_detector(np.zeros((128, 128, 3), np.uint8), "e"))],
        (300, 420),
        "e",
        NAMES,
    )
    assert len(empty) == 0 and empty.masks.shape == (0, 300, 420)


def test_predictor_tiles_only_images_the_resize_would_shrink_more_than_a_window(monkeypatch):
    torch.manual_seed(0)
    sizes = ["INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "200"]
    cfg = setup_cfg(INSTANT, [*sizes, "SPERM.TILE.SIZE", "128", "SPERM.TILE.OVERLAP", "48"])
    predictor = SpermPredictor(cfg, score_threshold=0.0, batch_size=1)
    assert predictor.window_scale == 1.0
    assert predictor.windows(128, 190) is None  # read whole, at the window's scale
    assert predictor.windows(300, 420) is not None

    def detect(images, scale=None):  # windows and whole images alike at the window scale (1)
        assert scale == 1.0
        out = []
        for crop in images:
            p = _square_detector(crop, "")
            inst = Instances(p.image_size)
            inst.pred_boxes = Boxes(torch.as_tensor(p.boxes))
            inst.scores = torch.as_tensor(p.scores)
            inst.pred_classes = torch.as_tensor(p.classes)
            inst.pred_masks = torch.as_tensor(p.masks)
            out.append(inst)
        return out

    monkeypatch.setattr(predictor, "predict_instances", detect)
    image, heads = _field()
    pred = predictor(image, source="big.png")
    assert len(pred) == len(heads) and pred.image_size == image.shape[:2]
    # a field smaller than a window is read whole at the window scale, not blown up to 128 px
    small = np.zeros((60, 90, 3), np.uint8)
    small[10:30, 20:50] = 255
    assert predictor._input_size(("s", None, small)) == (60, 90)
    assert len(predictor(small)) == 1


def _merge_with_whole_masks(parts, size):
    """merge_windows' rule the obvious way: every detection laid out over the whole image,
    IoUs of COCO RLEs, the same preference (whole first, then score) and duplicate tests."""
    from pycocotools import mask as mask_util

    from sperm_d2.inference.tiling import CUT_INSIDE, _cut_by_window
    from sperm_d2.masks import SAME_HEAD_IOU, encode_masks, rle_iou

    h, w = size
    masks, scores, cut = [], [], []
    for win, pred in parts:
        for m, s in zip(pred.masks, pred.scores):
            full = np.zeros((h, w), bool)
            full[win.y0 : win.y1, win.x0 : win.x1] = m
            masks.append(full)
            scores.append(s)
        cut.append(_cut_by_window(pred.masks, win, h, w))
    masks, scores, cut = np.stack(masks), np.asarray(scores), np.concatenate(cut)
    rles = encode_masks(masks)
    areas = np.asarray(mask_util.area(rles), float)
    ious = rle_iou(rles, rles)
    kept = []
    for i in np.lexsort((-scores, cut)):
        inter = [ious[i, k] * (areas[i] + areas[k]) / (1 + ious[i, k]) for k in kept]
        dup = any(ious[i, k] >= SAME_HEAD_IOU for k in kept)
        if not dup and cut[i] and areas[i] > 0:
            dup = any(x / areas[i] >= CUT_INSIDE for x in inter)
        if not dup:
            kept.append(i)
    kept = np.asarray(kept)[np.argsort(-scores[kept], kind="stable")]
    return masks[kept], scores[kept]


def test_merging_holds_crops_and_keeps_what_whole_image_masks_would():
    """Detections are merged from the crops around their masks (memory: the kept heads, not
    every window's detections laid over the image): the same heads, scores and masks as the
    rule computed on whole-image masks, on random blobs seen by overlapping windows."""
    rng = np.random.default_rng(0)
    h, w = 300, 420
    image = np.zeros((h, w, 3), np.uint8)
    for _ in range(25):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        axes = (int(rng.integers(4, 30)), int(rng.integers(3, 12)))
        cv2.ellipse(image, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, (255,) * 3, -1)
    parts = []
    for win in tile_windows(h, w, 128, 40):
        crop = image[win.y0 : win.y1, win.x0 : win.x1]
        pred = _square_detector(crop, "x")
        pred.scores[:] = rng.uniform(0.5, 1.0, len(pred)).astype(np.float32)
        parts.append((win, pred))
    merged = merge_windows(parts, (h, w), "x", NAMES)
    masks, scores = _merge_with_whole_masks(parts, (h, w))
    assert 10 < len(merged) < sum(len(p) for _, p in parts)  # duplicates were removed
    assert np.array_equal(merged.masks, masks) and np.allclose(merged.scores, scores)
