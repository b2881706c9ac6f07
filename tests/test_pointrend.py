"""PointRend as the detector's mask head (configs/*pointrend*.yaml): it trains through
train_net.py on polygon annotations, its run folder loads for inference, and its masks are
image-sized like the standard head's."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

from sperm_d2.config import ConfigError, setup_cfg
from sperm_d2.inference import SpermPredictor

from .conftest import REPO, split_opts

INSTANT = REPO / "configs/quick_schedules/sperm_mask_rcnn_pointrend_instant_test.yaml"
FIELDS = REPO / "configs/sperm_mask_rcnn_R_18_FPN_fields_pointrend_cpu.yaml"


def test_point_head_counts_sperm_classes() -> None:
    """PointRend's point head predicts one mask per class: its count follows SPERM.CLASSES like
    the box head's, and a stated count that disagrees is refused in one line."""
    assert setup_cfg(str(FIELDS)).MODEL.POINT_HEAD.NUM_CLASSES == 1
    cfg = setup_cfg(str(INSTANT), ["SPERM.CLASSES", "['normal', 'tapered', 'pyriform']"])
    assert cfg.MODEL.POINT_HEAD.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3
    with pytest.raises(ConfigError, match=r"MODEL\.POINT_HEAD\.NUM_CLASSES = 5 but SPERM"):
        setup_cfg(str(INSTANT), ["MODEL.POINT_HEAD.NUM_CLASSES", "5"])


@pytest.fixture(scope="module")
def pointrend_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("pointrend_run")
    cmd = [sys.executable, str(REPO / "tools/train_net.py"), "--config-file", str(INSTANT)]
    cmd += split_opts(tiny_dataset.root, "tinypr") + ["OUTPUT_DIR", str(out), "SEED", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout + proc.stderr


@pytest.mark.slow
def test_pointrend_trains_with_its_point_loss(pointrend_run) -> None:
    out, log = pointrend_run
    assert (out / "model_final.pth").is_file()
    state = torch.load(out / "model_final.pth", weights_only=True)["model"]
    assert any(k.startswith("roi_heads.mask_head.point_head.") for k in state)
    assert "loss_mask_point" in (out / "metrics.json").read_text()


@pytest.mark.slow
def test_pointrend_run_segments_at_image_size(pointrend_run, tiny_dataset) -> None:
    """The refined masks come back pasted into the image like the standard head's: one
    image-sized boolean mask per head, inside its box (a little slack for the pasting)."""
    out, _ = pointrend_run
    torch.manual_seed(0)
    predictor = SpermPredictor.from_run(out, score_threshold=0.0)
    path = DatasetCatalog.get(tiny_dataset.names["val"])[0]["file_name"]
    image = cv2.imread(path)
    pred = predictor(image, source=path)
    h, w = image.shape[:2]
    assert len(pred) > 0
    assert pred.masks.shape == (len(pred), h, w) and pred.masks.dtype == bool
    for mask, (x0, y0, x1, y1) in zip(pred.masks, pred.boxes):
        ys, xs = np.nonzero(mask)
        if len(xs):
            assert xs.min() >= x0 - 2 and xs.max() <= x1 + 2
            assert ys.min() >= y0 - 2 and ys.max() <= y1 + 2
