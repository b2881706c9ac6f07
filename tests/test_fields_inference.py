"""Full fields at inference: heads cut by the border are listed but not graded, and a one-class
(head-finding) detector's heads are graded by a good/bad head grader."""

import numpy as np
import pytest
import torch

from sperm_d2.config import setup_cfg
from sperm_d2.inference.records import image_record, instance_rows
from sperm_d2.inference.types import ImagePrediction

from .conftest import REPO

GRADER = str(REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml")


def _heads(class_names=("good", "bad")) -> ImagePrediction:
    masks = np.zeros((3, 60, 80), bool)
    masks[0, 10:20, 10:25] = True  # whole
    masks[1, 0:12, 40:55] = True  # cut by the top border
    masks[2, 30:45, 30:50] = True  # whole
    return ImagePrediction(
        source="field.png",
        image_size=(60, 80),
        boxes=np.array([[10, 10, 25, 20], [40, 0, 55, 12], [30, 30, 50, 45]], np.float32),
        masks=masks,
        scores=np.array([0.9, 0.8, 0.7], np.float32),
        classes=np.array([0, 0, 1], np.int64),
        class_names=class_names,
    )


def test_heads_cut_by_the_border_are_listed_but_not_graded():
    pred = _heads()
    rows = instance_rows(pred)
    assert [r["at_border"] for r in rows] == [False, True, False]
    record = image_record(pred, "sample", rows)
    assert record["heads"] == 3 and record["heads_at_border"] == 1
    assert record["counts"] == {"good": 1, "bad": 1} and record["pct_good"] == 50.0
    assert [h["at_border"] for h in record["instances"]] == [False, True, False]


@pytest.fixture(scope="module")
def grader(tmp_path_factory):
    from detectron2.modeling import build_model

    from sperm_d2.inference.grader import HeadGrader

    cfg = setup_cfg(GRADER, ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    weights = tmp_path_factory.mktemp("grader") / "grader.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    return HeadGrader(cfg, weights, precision="fp32")


def test_a_one_class_detector_is_graded_with_the_graders_classes(grader):
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)
    pred = _heads(("head",))
    pred.classes[:] = 0
    graded = grader.grade(image, pred)
    assert graded.class_names == ("good", "bad") and graded.detector_classes is None
    assert graded.p_bad.shape == (3,) and set(graded.classes.tolist()) <= {0, 1}
    rows = instance_rows(graded)
    assert all(r["detector_class"] == "" and r["class"] in ("good", "bad") for r in rows)
    with pytest.raises(ValueError, match="differ"):
        grader.check_classes(("normal", "abnormal", "debris"))


def test_a_one_class_detector_without_grader_reports_no_percent_good():
    from sperm_d2.inference.records import pct_good
    from sperm_d2.inference.run_report import sample_rows, wilson_interval

    assert pct_good({"head": 5}) is None and pct_good({"good": 1, "bad": 1}) == 50.0
    total = {"images": 1, "images_without_heads": 0, "heads": 5, "head": 5}
    summary = {"classes": ["head"], "totals": {"samples": {"s": total}, "videos": {}}}
    (row,) = sample_rows(summary)
    assert row["pct"] is None and row["ci"] is None and row["counts"] == {"head": 5}
    for n in range(1, 60):  # the interval holds the proportion itself, even at 0 % and 100 %
        for k in (0, n):
            lo, hi = wilson_interval(k, n)
            assert lo <= 100.0 * k / n <= hi
