"""Parts given to detected heads, and the head-level metrics against the annotation, on a
synthetic field whose label map is known."""

import json

import numpy as np
import pytest

from sperm_d2.parts.assign import assign_parts
from sperm_d2.parts.head_metrics import head_components, match_heads, summarise
from sperm_d2.parts.targets import HEAD_PARTS, PART_CLASSES, label_map, sperm_parts

from .part_scenes import write_part_scene


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """(labels, annotations as detectron2 records hold them, size) of one synthetic field."""
    path = write_part_scene(tmp_path_factory.mktemp("field"), "f", seed=3, size=128)
    doc = json.loads(path.read_text())
    anns = [
        {
            "category_id": PART_CLASSES.index(s["label"].lower()),
            "segmentation": [np.ravel(s["points"]).tolist()],
            "group_id": s["group_id"],
        }
        for s in doc["shapes"]
    ]
    return label_map(anns, PART_CLASSES, 128, 128), anns


def _heads(gt):
    return np.stack([np.any([p[n] for n in HEAD_PARTS if n in p], axis=0) for p in gt.values()])


def test_every_part_goes_to_its_own_head(field) -> None:
    labels, anns = field
    gt = sperm_parts(anns, PART_CLASSES, 128, 128)
    parsed = assign_parts(labels, _heads(gt), PART_CLASSES)
    assert len(parsed) == 2
    for got, want in zip(parsed, gt.values()):
        for name in PART_CLASSES:
            w = want.get(name, np.zeros((128, 128), bool))
            assert (got[name] == w).all(), name
    assert assign_parts(labels, np.zeros((0, 128, 128), bool)) == []


def test_perfect_prediction_scores_perfectly(field) -> None:
    labels, anns = field
    gt = sperm_parts(anns, PART_CLASSES, 128, 128)
    heads = head_components(labels, PART_CLASSES)
    assert len(heads) == 2
    matches = match_heads(gt, heads, assign_parts(labels, heads, PART_CLASSES))
    s = summarise(matches)
    assert s["matched_pct"] == 100 and s["acrosome_share_mae_pts"] == pytest.approx(0)
    assert s["acrosome_share_within_5pts_pct"] == 100 and s["vacuole_count_accuracy_pct"] == 100


def test_a_wrong_acrosome_and_a_missed_head_count(field) -> None:
    labels, anns = field
    gt = sperm_parts(anns, PART_CLASSES, 128, 128)
    worse = labels.copy()
    worse[worse == 1] = 2  # every acrosome pixel called nucleus
    heads = head_components(worse, PART_CLASSES)[:1]  # one head missed
    s = summarise(match_heads(gt, heads, assign_parts(worse, heads, PART_CLASSES)))
    assert s["matched_pct"] == 50 and s["acrosome_share_within_5pts_pct"] == 0
    assert s["acrosome_share_mae_pts"] > 20
