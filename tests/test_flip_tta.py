"""The detector's flip test-time augmentation (SPERM.INFER_TTA, sperm_d2.inference.flip_tta).

Its views are a group of flips, so predicting a flipped image must give the flipped prediction:
the flipped image's views are the original's views in another order. That holds only when every
view's boxes and masks are carried back to the image correctly (a mask left flipped breaks it),
and it holds on random weights, where the model itself is far from flip-symmetric."""

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

from sperm_d2.config import ConfigError, setup_cfg
from sperm_d2.inference import SpermPredictor
from sperm_d2.inference.flip_tta import FlipTTA

from .conftest import REPO

INSTANT = str(REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml")
SIZE = 64  # the instant config's test size: the image is not resized (resizing is not exact)


def predictor(mode: str) -> SpermPredictor:
    torch.manual_seed(0)  # the same random weights for every mode
    opts = ["SPERM.INFER_TTA", mode, "SPERM.INFER_PRECISION", "fp32", "SPERM.INFER_BATCH_SIZE"]
    # random GN weights score every class ~1/3: a zero threshold makes the heads run
    return SpermPredictor(setup_cfg(INSTANT, opts + ["1"]), score_threshold=0.0)


def field(tiny_dataset) -> np.ndarray:
    path = DatasetCatalog.get(tiny_dataset.names["val"])[0]["file_name"]
    return np.ascontiguousarray(cv2.resize(cv2.imread(path), (SIZE, SIZE))[:, : SIZE - 8])


def flip_boxes(boxes: np.ndarray, h: int, w: int, how: str) -> np.ndarray:
    out = boxes.copy()
    if "h" in how:
        out[:, [0, 2]] = w - boxes[:, [2, 0]]
    if "v" in how:
        out[:, [1, 3]] = h - boxes[:, [3, 1]]
    return out


def flip(a: np.ndarray, how: str, h_axis: int, v_axis: int) -> np.ndarray:
    axes = [ax for ax, f in ((h_axis, "h"), (v_axis, "v")) if f in how]
    return np.ascontiguousarray(np.flip(a, axes))


@pytest.mark.parametrize("mode,how", [("hflip", "h"), ("flips", "v"), ("flips", "hv")])
def test_flipped_field_gives_the_flipped_prediction(tiny_dataset, mode, how) -> None:
    p = predictor(mode)
    assert isinstance(p.forward_model, FlipTTA)
    image = field(tiny_dataset)
    h, w = image.shape[:2]
    a = p(image)
    b = p(flip(image, how, h_axis=1, v_axis=0))  # H x W x 3
    assert len(a) > 0 and len(a) == len(b)
    np.testing.assert_allclose(np.sort(a.scores), np.sort(b.scores), rtol=0, atol=1e-4)
    # every detection of the flipped field is one of the field's, flipped (order may differ
    # among equal scores)
    back = flip_boxes(b.boxes, h, w, how)
    dist = np.abs(back[:, None, :] - a.boxes[None, :, :]).max(axis=2)
    assert dist.min(axis=1).max() < 0.05
    masks_back = flip(b.masks, how, h_axis=2, v_axis=1)  # N x H x W
    for k, j in enumerate(dist.argmin(axis=1)):
        inter = np.logical_and(masks_back[k], a.masks[j]).sum()
        union = np.logical_or(masks_back[k], a.masks[j]).sum()
        assert union == 0 or inter / union > 0.97
    # and the views changed something: the plain model's prediction is not the same
    plain = predictor("none")
    assert plain.forward_model is plain.model
    c = plain(image)
    assert len(c) != len(a) or not np.allclose(c.scores, a.scores, atol=1e-4)


def test_unknown_view_set_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"SPERM\.INFER_TTA") as e:
        setup_cfg(INSTANT, ["SPERM.INFER_TTA", "rot90"])
    assert "\n" not in str(e.value)
