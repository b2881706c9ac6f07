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
