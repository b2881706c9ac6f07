"""Parts given to detected heads, and the head-level metrics against the annotation, on a
synthetic field whose label map is known."""

import json

import numpy as np
import pytest

from sperm_d2.parts.assign import assign_parts
from sperm_d2.parts.head_metrics import annotated_heads, head_components, match_heads, summarise
from sperm_d2.parts.targets import PART_CLASSES, label_map, sperm_parts

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


def test_every_part_goes_to_its_own_head(field) -> None:
    labels, anns = field
    gt = sperm_parts(anns, PART_CLASSES, 128, 128)
    parsed = assign_parts(labels, annotated_heads(gt, (128, 128)), PART_CLASSES)
    assert len(parsed) == 2
    for got, want in zip(parsed, gt.values()):
        for name in PART_CLASSES:
            w = want.get(name, np.zeros((128, 128), bool))
            assert (got[name] == w).all(), name
    assert assign_parts(labels, np.zeros((0, 128, 128), bool)) == []


def _assign_by_brute_force(labels, heads):
    """assign_parts' rule computed the slow, obvious way: whole-image distance transforms and one
    overlap count per (component, anchor) pair."""
    import cv2

    from sperm_d2.parts.assign import ATTACH_PX, HEAD_MARGIN, _grow

    def grow(m):
        return _grow(m, ATTACH_PX)

    def attach(part, anchors):
        out = [np.zeros(part.shape, bool) for _ in anchors]
        n, comp = cv2.connectedComponents(part.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            overlaps = [int(((comp == k) & grow(a)).sum()) for a in anchors]
            if max(overlaps) > 0:
                out[int(np.argmax(overlaps))] |= comp == k
        return out

    dist = np.stack([cv2.distanceTransform((~h).astype(np.uint8), cv2.DIST_L2, 3) for h in heads])
    nearest, near = dist.argmin(0), dist.min(0) <= HEAD_MARGIN
    out = [{} for _ in heads]
    for k, name in enumerate(["acrosome", "nucleus", "vacuole"]):
        for i in range(len(heads)):
            out[i][name] = (labels == k + 1) & near & (nearest == i)
    cores = [h | o["acrosome"] | o["nucleus"] | o["vacuole"] for h, o in zip(heads, out)]
    mids = attach(labels == 4, cores)
    tails = attach(labels == 5, [m if m.any() else c for m, c in zip(mids, cores)])
    for o, m, t in zip(out, mids, tails):
        o["midpiece"], o["tail"] = m, t
    return out


def test_assign_parts_equals_the_brute_force_rule() -> None:
    """The fast assignment (boxes around each head, one overlap count per anchor) gives exactly
    the pixels of the obvious whole-image rule, ties and heads near the border included."""
    import cv2

    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(20, 90, 2))
        labels = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(0, 12))):
            x, y, c = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(1, 6))
            end = (x + int(rng.integers(-30, 30)), y + int(rng.integers(-30, 30)))
            cv2.line(labels, (x, y), end, c, int(rng.integers(1, 4)))
        heads = np.zeros((int(rng.integers(1, 5)), h, w), np.uint8)
        for m in heads:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(m, centre, int(rng.integers(0, 9)), 1, -1)
        fast, slow = assign_parts(labels, heads.astype(bool)), _assign_by_brute_force(
            labels, heads.astype(bool)
        )
        for mine, theirs in zip(fast, slow):
            assert sorted(mine) == sorted(theirs)
            for name in theirs:
                assert np.array_equal(mine[name], theirs[name]), name


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


def test_annotated_heads_are_the_heads_the_metrics_match(field) -> None:
    labels, anns = field
    gt = sperm_parts(anns, PART_CLASSES, 128, 128)
    heads = annotated_heads(gt, (128, 128))
    assert heads.shape == (2, 128, 128)
    for head, parts in zip(heads, gt.values()):
        assert (head == (parts["acrosome"] | parts["nucleus"] | parts.get("vacuole", False))).all()
    # given the annotated outlines and the annotated parts, every head matches at IoU 1
    s = summarise(match_heads(gt, heads, assign_parts(labels, heads, PART_CLASSES)))
    assert s["matched_pct"] == 100 and s["median_head_iou"] == 1.0
    # a sperm annotated without head parts (a tail alone) gives no head; none at all gives (0, H, W)
    tail_only = {7: {"tail": labels == 1 + PART_CLASSES.index("tail")}, **gt}
    assert len(annotated_heads(tail_only, (128, 128))) == 2
    assert annotated_heads({}, (128, 128)).shape == (0, 128, 128)


def test_flagged_split_nucleus_heads_are_counted_apart(field) -> None:
    labels, anns = field
    gt = sperm_parts(anns, PART_CLASSES, 128, 128)
    worse = labels.copy()
    first = next(iter(gt.values()))
    worse[first["acrosome"]] = 1 + PART_CLASSES.index("nucleus")  # the first head's share wrong
    heads = head_components(labels, PART_CLASSES)
    pred = assign_parts(worse, heads, PART_CLASSES)
    plain = summarise(match_heads(gt, heads, pred))
    assert plain["acrosome_share_within_5pts_pct"] == 50 and plain["split_nucleus_heads"] == 0
    assert plain["acrosome_share_within_5pts_unflagged_pct"] == 50
    flagged = summarise(match_heads(gt, heads, pred, {next(iter(gt))}))
    assert flagged["split_nucleus_heads"] == 1
    assert flagged["acrosome_share_within_5pts_pct"] == 50  # the judged number does not change
    assert flagged["acrosome_share_within_5pts_unflagged_pct"] == 100
    every = summarise(match_heads(gt, heads, pred, set(gt)))
    assert "acrosome_share_within_5pts_unflagged_pct" not in every


def test_an_image_without_heads_runs_no_segmenter() -> None:
    """Part labels of no heads: an empty stack, and the field segmenter is not run (an empty
    frame of a video costs nothing more)."""
    from sperm_d2.parts.parser import PartParser

    class Field:
        input, class_names, source, calls = "field", PART_CLASSES, "stub", 0

        def labels(self, images):
            Field.calls += 1
            return np.zeros(images.shape[:3], np.uint8)

    parser = PartParser([Field()])
    image = np.zeros((40, 50, 3), np.uint8)
    out = parser.part_labels(image, np.zeros((0, 40, 50), bool))
    assert out.shape == (0, 40, 50) and out.dtype == np.uint8 and Field.calls == 0
    assert parser.part_labels(image, np.ones((1, 40, 50), bool)).shape == (1, 40, 50)
    assert Field.calls == 1
