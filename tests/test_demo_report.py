"""The demo's REPORT.md is built from what the tools wrote (here: hand-made stand-ins)."""

import json

from sperm_d2.demo_report import write_demo_report


def test_report_holds_the_numbers_and_links(tmp_path):
    (tmp_path / "timings.tsv").write_text("step\tseconds\ntrain\t125\ntotal (demo.sh)\t600\n")
    ann = tmp_path / "data" / "annotations"
    ann.mkdir(parents=True)
    cats = [{"id": 1, "name": "good"}, {"id": 2, "name": "bad"}]
    anns = [{"category_id": 1}, {"category_id": 2}, {"category_id": 2}]
    coco = {"images": [{"id": 1}, {"id": 2}], "categories": cats, "annotations": anns}
    (ann / "test.json").write_text(json.dumps(coco))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "plot_ap.png").write_bytes(b"png")
    best = {"metric": "segm/AP50", "value": 81.25, "iteration": 199, "checkpoint": "model_best.pth"}
    (tmp_path / "train" / "best_model.json").write_text(json.dumps(best))
    (tmp_path / "grader").mkdir()
    grader_best = {
        "metric": "grader/balanced_accuracy",
        "value": 0.9175,
        "iteration": 59,
        "checkpoint": "model_best.pth",
        "metrics": {"grader/accuracy": 0.9394, "grader/balanced_accuracy": 0.9175},
    }
    (tmp_path / "grader" / "best_model.json").write_text(json.dumps(grader_best))
    (tmp_path / "eval").mkdir()
    test = {"segm/AP50": 77.7, "segm/AP": 41.0, "bbox/AP": 40.0, "pixellib/mAP50": 0.812}
    test.update(
        {"at_threshold/precision": 0.9, "at_threshold/recall": 0.8, "at_threshold/f1": 0.847}
    )
    metrics = {
        "grader": "output/demo/grader",
        "test_dataset": "sperm_test",
        "threshold": 0.61,
        "threshold_chosen_on": "sperm_val",
        "test": test,
    }
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics))
    text = write_demo_report(tmp_path).read_text()
    assert "2 min 05 s" in text and "10 min 00 s" in text
    assert "| test    |        2 |       3 |      1 |     2 |" in text
    assert "81.25 at iteration 199" in text and "![plot_ap](train/plot_ap.png)" in text
    assert "**segm/AP50 = 77.7**" in text and "0.812" in text and "F1 0.847" in text
    assert "(no inference found)" in text  # missing parts are said, not crashed on
    assert "## Head grader (`grader/`)" in text and "`grader/balanced_accuracy`: 0.92" in text
    assert "accuracy 0.939" in text and "Heads graded by the head grader `grader/`" in text
