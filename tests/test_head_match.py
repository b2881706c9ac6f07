"""Head-level field metrics (evaluation.head_match) and the border rule (sperm_d2.masks)."""

import math

import numpy as np

from sperm_d2.evaluation.head_match import HeadMatchTally, match_greedy
from sperm_d2.masks import BORDER_MARGIN, cut_by_border, encode_masks, rle_cut_by_border


def _mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_cut_by_border_flags_masks_reaching_the_margin_only():
    masks = np.stack(
        [
            _mask(40, 50, 10, 20, 10, 20),  # inside
            _mask(40, 50, 0, 5, 10, 20),  # top edge
            _mask(40, 50, 10, 20, 50 - BORDER_MARGIN, 50),  # within the margin on the right
            _mask(40, 50, 10, 20, 50 - BORDER_MARGIN - 5, 50 - BORDER_MARGIN),  # just outside
            np.zeros((40, 50), bool),  # empty
        ]
    )
    assert cut_by_border(masks).tolist() == [False, True, True, False, False]
    assert rle_cut_by_border(encode_masks(masks)).tolist() == [False, True, True, False, False]
    assert cut_by_border(np.zeros((0, 40, 50), bool)).shape == (0,)


def test_match_greedy_takes_the_best_free_head_in_score_order():
    ious = np.array([[0.6, 0.9], [0.0, 0.8], [0.4, 0.0]])
    # prediction 1 scores highest and takes head 1; prediction 0 then gets head 0 (0.6);
    # prediction 2 overlaps nothing free at >= 0.5
    assert match_greedy(ious, np.array([0.5, 0.9, 0.7])) == [(1, 1), (0, 0)]
    assert match_greedy(np.zeros((2, 0)), np.array([0.9, 0.8])) == []
    assert match_greedy(np.zeros((0, 3)), np.zeros(0)) == []


def test_tally_recall_precision_median_iou_and_border_accuracy():
    t = HeadMatchTally()
    # image 1: 2 heads, 3 predictions; head 0 found (0.9, flags agree), head 1 found (0.7,
    # flags disagree), one false detection
    t.add(
        np.array([[0.9, 0.0], [0.0, 0.7], [0.1, 0.2]]),
        np.array([0.9, 0.8, 0.6]),
        np.array([False, True, False]),
        np.array([False, False]),
    )
    # image 2: one head at the border, missed
    t.add(np.zeros((0, 1)), np.zeros(0), np.zeros(0, bool), np.array([True]))
    s = t.summary()
    assert s["recall50"] == 2 / 3 and s["precision50"] == 2 / 3
    assert math.isclose(s["median_iou"], 0.8) and s["border_accuracy"] == 0.5
    assert s["gt_at_border"] == 1 and s["predicted_at_border"] == 1
    merged = t.merge([t])
    assert merged.gt == 6 and merged.summary()["recall50"] == 2 / 3


def test_empty_tally_is_nan_not_an_error():
    s = HeadMatchTally().summary()
    assert all(math.isnan(s[k]) for k in ("recall50", "precision50", "median_iou"))


def test_heads_evaluator_scores_ground_truth_as_perfect_and_empty_output_as_missed(tiny_dataset):
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Boxes, Instances
    from pycocotools import mask as mask_util

    from sperm_d2.evaluation.heads_evaluator import HeadsEvaluator
    from sperm_d2.masks import segmentation_to_rle

    records = DatasetCatalog.get(tiny_dataset.names["val"])
    ev = HeadsEvaluator(tiny_dataset.names["val"], score_threshold=0.5, distributed=False)

    def outputs(record, perfect: bool) -> list[dict]:
        h, w = record["height"], record["width"]
        anns = record["annotations"] if perfect else []
        masks = np.stack(
            [mask_util.decode(segmentation_to_rle(a["segmentation"], h, w)) for a in anns]
            or [np.zeros((h, w), np.uint8)]
        )[: len(anns)].astype(bool)
        inst = Instances((h, w))
        inst.pred_masks = torch.from_numpy(masks)
        inst.scores = torch.full((len(anns),), 0.9)
        inst.pred_boxes = Boxes(torch.zeros((len(anns), 4)))
        inst.pred_classes = torch.zeros(len(anns), dtype=torch.int64)
        return [{"instances": inst}]

    ev.reset()
    for r in records:
        ev.process([{"image_id": r["image_id"]}], outputs(r, True))
        ev.process([{"image_id": r["image_id"]}], outputs(r, True))  # padding repeats: once
    s = ev.evaluate()["heads"]
    n = sum(len(r["annotations"]) for r in records)
    assert s["gt_heads"] == n and s["recall50"] == 1.0 and s["precision50"] == 1.0
    assert s["median_iou"] == 1.0 and s["border_accuracy"] == 1.0
    ev.reset()
    for r in records:
        ev.process([{"image_id": r["image_id"]}], outputs(r, False))
    s = ev.evaluate()["heads"]
    assert s["recall50"] == 0.0 and math.isnan(s["median_iou"])
