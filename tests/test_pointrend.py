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
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from sperm_d2.config import ConfigError, setup_cfg
from sperm_d2.config.validate import ConfigCheckError, check_values
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


def headless_batch(size: int = 64) -> list[dict]:
    """Two training images without a single head (background windows of a field)."""
    batch = []
    for seed in (0, 1):
        image = torch.randint(
            0, 255, (3, size, size), generator=torch.Generator().manual_seed(seed)
        )
        gt = Instances((size, size))
        gt.gt_boxes = Boxes(torch.zeros(0, 4))
        gt.gt_classes = torch.zeros(0, dtype=torch.int64)
        gt.gt_masks = BitMasks(torch.zeros(0, size, size, dtype=torch.bool))
        batch.append({"image": image.float(), "instances": gt, "height": size, "width": size})
    return batch


def training_model(head: str):
    cfg = setup_cfg(str(INSTANT), ["MODEL.ROI_MASK_HEAD.NAME", head, "MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    return cfg, build_model(cfg).train()


def test_stock_point_head_stops_on_a_batch_without_heads_and_is_refused() -> None:
    """detectron2's own PointRendMaskHead crashes on a batch of windows with no head (no
    foreground proposal; it stopped a 1350-iteration fields run), so training with it is
    refused in one line."""
    cfg, model = training_model("PointRendMaskHead")
    with pytest.raises(ValueError, match="non-empty list"), EventStorage():
        model(headless_batch())
    with pytest.raises(ConfigCheckError, match="PointRendMaskHead. stops a training") as e:
        check_values(cfg, "x.yaml", training=True)
    assert "\n" not in str(e.value)


def test_a_batch_without_heads_trains() -> None:
    """SpermPointRendMaskHead gives zero mask losses on such a batch, as the standard head does,
    connected to every parameter of the head."""
    cfg, model = training_model("SpermPointRendMaskHead")
    with EventStorage():
        losses = model(headless_batch())
    assert losses["loss_mask"].item() == 0.0 and losses["loss_mask_point"].item() == 0.0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.roi_heads.mask_head.parameters()]
    assert all(g is not None and not g.any() for g in grads), "every head parameter is used"
    check_values(cfg, "x.yaml", training=True)


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
