"""Image-level grading metrics against hand-computed confusion matrices, and their figures."""

import math

import cv2
import numpy as np
import pytest

from sperm_d2.evaluation.classification import (
    GradedImage,
    choose_bias,
    choose_threshold,
    confusion_matrix,
    grade_metrics,
    metrics_from_confusion,
    per_group_good,
)
from sperm_d2.evaluation.figures import contact_sheet, plot_confusion_matrix

CLASSES = ("good", "bad")


def test_confusion_matrix_counts_no_head_in_its_own_column():
    true = ["good", "good", "good", "bad", "bad", "bad", "bad"]
    pred = ["good", "bad", None, "bad", "bad", "good", None]
    cm = confusion_matrix(true, pred, CLASSES)
    np.testing.assert_array_equal(cm, [[1, 1, 1], [1, 2, 1]])


def test_metrics_match_hand_computation():
    # true good: 8 graded good, 1 bad, 1 no head; true bad: 3 good, 6 bad, 1 no head.
    cm = np.array([[8, 1, 1], [3, 6, 1]])
    m = metrics_from_confusion(cm, CLASSES, positive="bad")
    assert m["images"] == 20
    assert m["accuracy"] == pytest.approx(14 / 20)
    assert m["sensitivity_bad"] == pytest.approx(6 / 10)  # the no-head bad image is a miss
    assert m["specificity_bad"] == pytest.approx(8 / 10)  # the no-head good image is not a TN
    assert m["precision_bad"] == pytest.approx(6 / 7)
    p, r = 6 / 7, 6 / 10
    assert m["f1_bad"] == pytest.approx(2 * p * r / (p + r))
    assert m["no_head"] == 2 and m["no_head_rate"] == pytest.approx(0.1)


def test_undefined_ratios_are_nan_not_errors():
    cm = np.array([[3, 0, 0], [0, 0, 0]])  # no bad images, nothing graded bad
    m = metrics_from_confusion(cm, CLASSES)
    assert m["accuracy"] == 1.0
    assert math.isnan(m["sensitivity_bad"]) and math.isnan(m["precision_bad"])


def test_unknown_class_is_an_error():
    with pytest.raises(ValueError, match="weird"):
        confusion_matrix(["weird"], ["good"], CLASSES)


def graded():
    return [
        GradedImage("s1/a.png", "good", "good", 0.9),
        GradedImage("s1/b.png", "good", "bad", 0.3),  # a weak wrong head: better dropped
        GradedImage("s2/c.png", "bad", "bad", 0.8),
        GradedImage("s2/d.png", "bad", "bad", 0.6),
        GradedImage("s2/e.png", "bad", None, 0.0),
    ]


def test_threshold_changes_grades_and_is_chosen_by_accuracy():
    g = graded()
    m0, cm0 = grade_metrics(g, CLASSES, 0.0)
    np.testing.assert_array_equal(cm0, [[1, 1, 0], [0, 2, 1]])
    assert m0["accuracy"] == pytest.approx(3 / 5)
    t = choose_threshold(g, CLASSES)
    # Thresholds above 0.3 turn b into "no head" (still wrong): accuracy stays 3/5, so the
    # lowest threshold with the best accuracy wins.
    assert t == 0.0
    m7, cm7 = grade_metrics(g, CLASSES, 0.7)
    np.testing.assert_array_equal(cm7, [[1, 0, 1], [0, 1, 2]])
    assert m7["accuracy"] == pytest.approx(2 / 5) and m7["threshold"] == 0.7


def test_choose_threshold_prefers_dropping_a_wrong_low_score_head():
    g = [
        GradedImage("a", "good", "good", 0.9),
        GradedImage("b", "bad", "bad", 0.8),
        GradedImage("c", "good", "bad", 0.2),  # wrong either way, but ...
        GradedImage("d", "bad", "good", 0.25),
    ]
    assert grade_metrics(g, CLASSES, choose_threshold(g, CLASSES))[0]["accuracy"] == 0.5
    g.append(GradedImage("e", "good", "good", 0.1))  # ... this one needs a threshold <= 0.1
    assert choose_threshold(g, CLASSES) <= 0.1


def test_per_group_good():
    out = per_group_good(graded(), lambda p: p.split("/")[0])
    assert out["s1"] == {"images": 2, "pct_good": 50.0, "no_head": 0}
    assert out["s2"] == {"images": 3, "pct_good": 0.0, "no_head": 1}


def test_figures_are_written(tmp_path):
    plot_confusion_matrix(
        np.array([[3, 1, 0], [2, 5, 1]]),
        list(CLASSES),
        [*CLASSES, "no head"],
        tmp_path / "cm.png",
        title="t",
    )
    assert cv2.imread(str(tmp_path / "cm.png")) is not None
    tiles = [(np.full((50, 30, 3), 100, np.uint8), "good->bad 0.9")] * 7
    assert contact_sheet(tiles, tmp_path / "sheet.png", tile=64, cols=3)
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape[1] == 3 * 64 and sheet.shape[0] == 3 * (64 + 18)
    assert not contact_sheet([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def scored(path, true, good, bad):
    """A crop whose model gave its best good head ``good`` and best bad head ``bad`` (0: none)."""
    best = {c: s for c, s in (("good", good), ("bad", bad)) if s > 0}
    top = max(best, key=best.get) if best else None
    return GradedImage(path, true, top, best.get(top, 0.0), tuple(best.items()))


def test_bias_moves_the_good_bad_boundary_between_detected_classes():
    g = scored("a", "good", good=0.4, bad=0.6)
    assert g.predicted() == "bad" and g.flip_bias() == pytest.approx(-0.2)
    assert g.predicted(bias=-0.19) == "bad" and g.predicted(bias=-0.21) == "good"
    only_bad = scored("b", "good", good=0.0, bad=0.3)
    assert only_bad.flip_bias() is None and only_bad.predicted(bias=-1.0) == "bad"
    assert only_bad.predicted(threshold=0.5, bias=-1.0) is None  # no head above the threshold


def test_choose_bias_corrects_a_model_leaning_to_the_majority_class():
    # every good crop scores bad a little higher than good: the top-head rule calls all bad
    g = [scored(f"g{i}", "good", 0.5, 0.55 + 0.01 * i) for i in range(4)]
    g += [scored(f"b{i}", "bad", 0.2, 0.8) for i in range(12)]
    plain = grade_metrics(g, CLASSES)[0]
    assert plain["accuracy"] == 0.75 and plain["balanced_accuracy"] == 0.5
    b = choose_bias(g, CLASSES)
    assert -0.6 < b < -0.08  # every good crop flips (at -0.05..-0.08), no bad one (-0.6)
    m = grade_metrics(g, CLASSES, bias=b)[0]
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0 and m["bias"] == b
    # a perfectly graded set keeps bias 0 (ties go to the smallest |bias|)
    assert choose_bias([scored("x", "good", 0.9, 0.1), scored("y", "bad", 0.1, 0.9)], CLASSES) == 0
    # one class only: balanced accuracy is undefined, no bias
    assert choose_bias(g[4:], CLASSES) == 0.0
